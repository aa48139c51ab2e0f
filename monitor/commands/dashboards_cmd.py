"""`radwatch dashboards build --out DIR | push --url URL`: Grafana dashboards as code.

The push token comes from RADWATCH_GRAFANA_TOKEN_FILE (preferred) or RADWATCH_GRAFANA_TOKEN,
never from the command line: arguments are visible to every local user in `ps`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from urllib.parse import urlsplit

from monitor.commands.output import add_json_flag, emit
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "dashboards",
        help="build or push the Grafana dashboards",
        description="Example: radwatch dashboards build --out deploy/grafana/dashboards; "
        "RADWATCH_GRAFANA_TOKEN_FILE=/run/secrets/grafana-token "
        "radwatch dashboards push --url http://grafana:3000",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="write one JSON file per dashboard")
    build.add_argument("--out", type=Path, required=True, metavar="DIR")
    build.set_defaults(handler=_build)
    push = actions.add_parser(
        "push", help="upload the dashboards to Grafana (overwrite)",
        description="The service-account token (Editor) is read from the file named by "
        "RADWATCH_GRAFANA_TOKEN_FILE, or from RADWATCH_GRAFANA_TOKEN.",
    )  # fmt: skip
    push.add_argument("--url", required=True, help="Grafana base URL, e.g. http://grafana:3000")
    # Kept only to refuse it with a clear message (argparse would just say "unrecognized").
    push.add_argument("--token", nargs="?", const="", default=None, help=argparse.SUPPRESS)
    push.add_argument("--folder", default="radwatch", help="folder title (created if missing)")
    add_json_flag(push)
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
    from monitor.errors import UsageError

    if args.token is not None:
        raise UsageError("--token is not accepted (it shows in ps): set RADWATCH_GRAFANA_TOKEN_FILE "
                         "or RADWATCH_GRAFANA_TOKEN")  # fmt: skip
    token = grafana_token(os.environ)
    try:
        api = GrafanaApi.from_url(args.url, credential=token)
        folders = {f["title"]: f["uid"] for f in api.folder.get_all_folders()}
        folder_uid = folders.get(args.folder) or api.folder.create_folder(args.folder)["uid"]
        for name, dashboard in as_dicts().items():
            reply = api.dashboard.update_dashboard({
                "dashboard": dashboard, "folderUid": folder_uid, "overwrite": True,
                "message": "radwatch dashboards push",
            })  # fmt: skip
            emit({"file": name, "uid": reply.get("uid"), "url": reply.get("url")}, args.json,
                 lambda d: f"pushed {d['file']}: uid {d['uid']}, {d['url']}")  # fmt: skip
    except GrafanaException as exc:
        raise UsageError(f"Grafana refused the upload: {exc}") from exc
    except OSError as exc:
        # Scheme, host and port only: a URL may carry user:password.
        where = urlsplit(args.url)
        raise UsageError(f"cannot reach Grafana at {where.scheme}://{where.hostname}"
                         f"{':' + str(where.port) if where.port else ''}: "
                         f"{exc.strerror or type(exc).__name__}") from exc  # fmt: skip
    return 0


def grafana_token(env) -> str:
    """The Grafana token: RADWATCH_GRAFANA_TOKEN_FILE wins over RADWATCH_GRAFANA_TOKEN."""
    from monitor.errors import UsageError

    if env.get("RADWATCH_GRAFANA_TOKEN_FILE"):
        try:
            token = Path(env["RADWATCH_GRAFANA_TOKEN_FILE"]).read_text().strip()
        except OSError as exc:
            raise UsageError(f"cannot read RADWATCH_GRAFANA_TOKEN_FILE: {exc.strerror}") from exc
    else:
        token = env.get("RADWATCH_GRAFANA_TOKEN", "").strip()
    if not token:
        raise UsageError("no Grafana token: set RADWATCH_GRAFANA_TOKEN_FILE (a file holding a "
                         "service-account token) or RADWATCH_GRAFANA_TOKEN")  # fmt: skip
    return token
