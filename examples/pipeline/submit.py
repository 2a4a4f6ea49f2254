"""Submit the compiled pipeline to Vertex AI Pipelines (needs a project, a bucket and credentials).

    python submit.py --project my-project --root gs://my-bucket/pipelines --lr 0.01 --epochs 5
"""
import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--project", required=True)
    parser.add_argument("--location", default="us-central1")
    parser.add_argument("--root", required=True, help="gs:// pipeline root: artifacts and step outputs go here")
    parser.add_argument("--template", default="hydra_classifier_pipeline.yaml", help="the output of compile.py")
    parser.add_argument("--service-account", default=None)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--no-cache", action="store_true")
    args = parser.parse_args()

    from google.cloud import aiplatform

    aiplatform.init(project=args.project, location=args.location)
    job = aiplatform.PipelineJob(
        display_name="hydra-classifier",
        template_path=args.template,
        pipeline_root=args.root,
        parameter_values={"lr": args.lr, "epochs": args.epochs, "optimizer": args.optimizer},
        enable_caching=not args.no_cache,
    )
    job.submit(service_account=args.service_account)  # logs the console link of the run
    print(job.resource_name)


if __name__ == "__main__":
    main()
