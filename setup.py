from pathlib import Path

from setuptools import find_namespace_packages, setup


def read_version() -> str:
    init = Path(__file__).parent / "hydra_plugins" / "hydra_vertex_ai" / "__init__.py"
    return init.read_text().split('"')[1]


setup(
    name="hydra-vertex-ai",
    version=read_version(),
    description="Hydra launcher and sweeper plugins for Google Vertex AI (CustomJobs and Vizier)",
    long_description=(Path(__file__).parent / "README.md").read_text(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_namespace_packages(include=["hydra_plugins.*"]),
    include_package_data=True,
    python_requires=">=3.10",
    # `hydra-vertex-ai list|status|logs|cancel|collect` (a private module: Hydra's plugin scan skips it)
    entry_points={"console_scripts": ["hydra-vertex-ai = hydra_plugins.hydra_vertex_ai._cli:main"]},
    install_requires=[
        "hydra-core>=1.3.2,<1.4",
        "omegaconf>=2.3,<2.4",
        "cloudpickle>=2.2",
        "cloudml-hypertune>=0.1.0.dev6",
        "google-cloud-aiplatform>=1.60",
        "google-cloud-storage>=2.10",
        "rich>=13",
    ],
    extras_require={
        # the local study engine (hydra.sweeper.backend=local, the emulator's tuning jobs); it runs on optuna 2.10
        # too, so installing us beside hydra-optuna-sweeper 1.2 (optuna<3) resolves (tests/test_real_projects.py,
        # tests/test_optuna_versions.py)
        "local-sweeps": ["optuna>=2.10"],
        # Vertex AI Pipelines components (hydra_plugins.hydra_vertex_ai.pipelines)
        "pipelines": ["kfp>=2.14,<3", "google-cloud-pipeline-components>=2.22,<3"],
        # a Cloud Storage emulator beside the JobService emulator (`python -m ...emulator --gcs-port`)
        "emulator": ["gcp-storage-emulator>=2024.8", "optuna>=2.10"],
        # report.html's plots (hydra_plugins.hydra_vertex_ai._report)
        "report": ["plotly>=5.18"],
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            # benchmarks/bench_heavy_local.py's baseline (Hydra's joblib launcher)
            "hydra-joblib-launcher>=1.2",
            "gcp-storage-emulator>=2024.8",
            "optuna>=3.4",
            "ruff>=0.6",
            "mypy>=1.10",
        ],
    },
    classifiers=[
        "Framework :: Hydra",
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
        "Operating System :: MacOS",
    ],
)
