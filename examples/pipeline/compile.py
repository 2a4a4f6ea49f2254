"""Compile the example pipeline to Vertex AI Pipelines' YAML:  python compile.py [OUT.yaml]"""
import sys
from pathlib import Path

from kfp import compiler

sys.path.insert(0, str(Path(__file__).parent))
from pipeline import classifier_pipeline  # noqa: E402


def main() -> None:
    out = sys.argv[1] if len(sys.argv) > 1 else "hydra_classifier_pipeline.yaml"
    compiler.Compiler().compile(classifier_pipeline, out)
    print(out)


if __name__ == "__main__":
    main()
