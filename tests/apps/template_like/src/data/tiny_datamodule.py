"""A data module in `src/data/` (the package name the default snapshot exclude list used to drop)."""
from pathlib import Path
from typing import List


class TinyDataModule:
    def __init__(self, data_file: str, batch_size: int) -> None:
        self.data_file = data_file
        self.batch_size = batch_size

    def numbers(self) -> List[int]:
        # an absolute path built from ${oc.env:PROJECT_ROOT}: it must name the shipped copy in a container
        return [int(line) for line in Path(self.data_file).read_text().split()]

    def batches(self) -> List[List[int]]:
        n = self.numbers()
        return [n[i:i + self.batch_size] for i in range(0, len(n), self.batch_size)]
