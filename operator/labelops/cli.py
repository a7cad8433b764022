"""`labelops`: one command for the operator, the worker, and the people who run them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _operator(args: argparse.Namespace) -> int:
    from labelops.operator.main import run

    return run(namespaces=args.namespace or (), verbose=args.verbose)


def _worker(args: argparse.Namespace) -> int:
    import os
    import shutil
    import tempfile

    # prometheus-client decides at import whether metric values are shared between
    # processes, so the directory the pre-forked HTTP processes sum /metrics over must exist
    # before the worker's modules load: the supervisor's own figures (ingest lag, outbox
    # backlog, dead letters) then reach /metrics too. An HTTP process inherits it.
    created = None
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        created = tempfile.mkdtemp(prefix="labelops-worker-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = created
    try:
        from labelops.worker.main import run

        return run()
    finally:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)


def _learner(args: argparse.Namespace) -> int:
    from labelops.learner.main import run

    return run()


def _router(args: argparse.Namespace) -> int:
    from labelops.router.main import run

    return run()


def _status(args: argparse.Namespace) -> int:
    from labelops.report.status_report import status

    return status(name=args.name, namespace=args.namespace, all_namespaces=args.all_namespaces)


def _export(args: argparse.Namespace) -> int:
    from labelops.report.export import export

    return export(args.name, args.namespace, args.format, out=args.output, method=args.method)


def _labelers(args: argparse.Namespace) -> int:
    from labelops.report.labelers import labelers

    return labelers(name=args.name, namespace=args.namespace, fmt=args.format)


def _crd(args: argparse.Namespace) -> int:
    from labelops.api.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="labelops", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)

    op = sub.add_parser("operator", help="run the operator (Kopf)")
    op.add_argument(
        "--namespace",
        "-n",
        action="append",
        help="serve this namespace; repeat for more (default: the whole cluster)",
    )
    op.add_argument("--verbose", "-v", action="store_true")
    op.set_defaults(func=_operator)

    wk = sub.add_parser("worker", help="run a campaign worker (configured from the environment)")
    wk.set_defaults(func=_worker)

    ln = sub.add_parser(
        "learner", help="run a campaign's built-in learner (configured from the environment)"
    )
    ln.set_defaults(func=_learner)

    rt = sub.add_parser(
        "router", help="run a LabelerPool's router (configured from the environment)"
    )
    rt.set_defaults(func=_router)

    st = sub.add_parser("status", help="progress, conditions and ETA of campaigns")
    st.add_argument("name", nargs="?")
    st.add_argument("--namespace", "-n", default=None)
    st.add_argument("--all-namespaces", "-A", action="store_true")
    st.set_defaults(func=_status)

    ex = sub.add_parser("export", help="stream a campaign's accepted labels")
    ex.add_argument("name")
    ex.add_argument("--namespace", "-n", default=None)
    ex.add_argument("--format", choices=["jsonl", "consolidated", "rlhf"], default="jsonl")
    ex.add_argument(
        "--method",
        choices=["majority", "weighted", "dawid-skene"],
        default="majority",
        help="how consolidated and rlhf reach one value per item (default: majority)",
    )
    ex.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
    ex.set_defaults(func=_export)

    lb = sub.add_parser(
        "labelers", help="each labeler's labels, gold accuracy, agreement, skips and blocks"
    )
    lb.add_argument("name")
    lb.add_argument("--namespace", "-n", default=None)
    lb.add_argument("--format", choices=["table", "json"], default="table")
    lb.set_defaults(func=_labelers)

    cr = sub.add_parser("crd", help="print the LabelingCampaign CRD")
    cr.set_defaults(func=_crd)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
