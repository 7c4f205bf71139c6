"""Rendering a spec for engines the tool does not drive itself: KubeRay manifests (`kuberay`) and Azure ML
entities (`azureml`). Pure functions from a spec to documents; writing files and submitting are the CLI's."""

from __future__ import annotations

from importlib import metadata

from ..spec import Spec
from ..submission import Submission, prepare


def project_version() -> str:
    """This project's version, which tags the images built from `docker/`."""
    try:
        return metadata.version("rl-orchestrator")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0.1.0"


def ray_version() -> str:
    """The Ray the images carry (the pinned one), without importing Ray."""
    try:
        return metadata.version("ray")
    except metadata.PackageNotFoundError:
        return "2.60.0"


def default_images() -> tuple[str, str]:
    """(head, worker) image tags that `docker/` builds: see docker/README.md."""
    v = project_version()
    return f"rl-orchestrator-head:{v}", f"rl-orchestrator-worker:{v}"


def resolve_images(image: str | None = None, head_image: str | None = None, worker_image: str | None = None):
    """`image` sets both; `head_image` / `worker_image` win for their role; the defaults are docker/'s tags."""
    head, worker = default_images()
    return head_image or image or head, worker_image or image or worker


def prepare_render(spec: Spec) -> Submission:
    """`spec` made ready to render (`submission.prepare`): planned and checked as for `rlo submit`, except that
    its tracking server is not contacted, since the rendered job runs elsewhere (Kubernetes, Azure ML)."""
    return prepare(spec, reach_services=False)
