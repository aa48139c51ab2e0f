"""`radwatch dashboards build --out DIR | push --url URL --token T`: Grafana dashboards as code."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "dashboards",
        help="build or push the Grafana dashboards",
        description="Example: radwatch dashboards build --out deploy/grafana/dashboards; "
        "radwatch dashboards push --url http://grafana:3000 --token $GRAFANA_TOKEN",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="write one JSON file per dashboard")
    build.add_argument("--out", type=Path, required=True, metavar="DIR")
    build.set_defaults(handler=_build)
    push = actions.add_parser("push", help="upload the dashboards to Grafana (overwrite)")
    push.add_argument("--url", required=True, help="Grafana base URL, e.g. http://grafana:3000")
    push.add_argument("--token", required=True, help="service-account token (Editor)")
    push.add_argument("--folder", default="radwatch", help="folder title (created if missing)")
    push.set_defaults(handler=_push)


def _build(args: argparse.Namespace, settings: Settings) -> int:
    from dashboards.build import write_all

    for path in write_all(args.out):
        print(path)
    return 0


def _push(args: argparse.Namespace, settings: Settings) -> int:
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaException

    from dashboards.build import as_dicts
    from monitor.cli import UsageError

    try:
        api = GrafanaApi.from_url(args.url, credential=args.token)
        folders = {f["title"]: f["uid"] for f in api.folder.get_all_folders()}
        folder_uid = folders.get(args.folder) or api.folder.create_folder(args.folder)["uid"]
        for name, dashboard in as_dicts().items():
            reply = api.dashboard.update_dashboard({
                "dashboard": dashboard, "folderUid": folder_uid, "overwrite": True,
                "message": "radwatch dashboards push",
            })  # fmt: skip
            print(json.dumps({"file": name, "uid": reply.get("uid"), "url": reply.get("url")}))
    except GrafanaException as exc:
        raise UsageError(f"Grafana refused the upload: {exc}") from exc
    except OSError as exc:
        raise UsageError(f"cannot reach Grafana at {args.url}: {exc}") from exc
    return 0
