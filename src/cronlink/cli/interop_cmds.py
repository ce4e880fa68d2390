"""`cronlink import` and `cronlink export`: Cloudflare cron triggers, Cloud Scheduler jobs
and Kubernetes CronJobs in and out of cronlink.toml."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click
import tomli_w

from cronlink.cli.options import print_json, settings_from, settings_options
from cronlink.cli.progress import bars
from cronlink.compose import build_app
from cronlink.errors import ConfigError
from cronlink.interop import cloud_scheduler, kubernetes, wrangler
from cronlink.interop.carry import APP_URL, Binding, Exported, Imported, append_jobs
from cronlink.plurals import counted
from cronlink.progress import Progress

KINDS = ("wrangler", "cloud-scheduler", "k8s")


@click.command("import")
@click.argument("kind_or_file")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--handler",
    metavar="MODULE:{name}",
    help="Bind each job to a Python handler; {name} is the job's name.",
)
@click.option(
    "--app-url",
    help="Base URL of the HTTP targets (default: a wrangler APP_URL var, else ${APP_URL}).",
)
@click.option("--env", "environment", metavar="NAME", help="wrangler: read [env.NAME].")
@click.option(
    "--output",
    "-o",
    default="cronlink.toml",
    show_default=True,
    metavar="PATH",
    help="The cronlink.toml to add the jobs to; - prints them.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the jobs and what was left out as JSON."
)
def import_command(
    kind_or_file: str,
    file: Path | None,
    handler: str | None,
    app_url: str | None,
    environment: str | None,
    output: str,
    as_json: bool,
) -> None:
    """Add jobs to cronlink.toml from KIND's definitions in FILE.

    KIND is wrangler (wrangler.toml, .json or .jsonc: [triggers] crons, [vars]),
    cloud-scheduler (a gcloud YAML or REST JSON export) or k8s (CronJob manifests); it may
    be left out for a file named wrangler.*. What cannot be carried over is listed.
    """
    kind, path = _kind_and_file(kind_or_file, file)
    if handler is not None and ":" not in handler:
        raise click.BadParameter(
            "give MODULE:FUNCTION, with {name} for the job's name", param_hint="--handler"
        )
    if environment is not None and kind != "wrangler":
        raise click.BadParameter("environments are wrangler's", param_hint="--env")
    if app_url is not None and kind == "cloud-scheduler" and handler is None:
        raise click.BadParameter(
            "Cloud Scheduler jobs keep the URL they call", param_hint="--app-url"
        )
    binding = Binding(handler=handler, app_url=app_url or APP_URL)
    with bars() as progress:
        imported = _read_definitions(kind, path, binding, environment, progress)
    if output != "-":
        append_jobs(Path(output), imported)
    if as_json:
        print_json(
            {
                "file": str(path),
                "written": None if output == "-" else output,
                "jobs": imported.jobs,
                "left_out": imported.left_out,
            }
        )
        return
    if output == "-":
        click.echo(tomli_w.dumps({"jobs": imported.jobs}), nl=False)
    else:
        names = ", ".join(job["name"] for job in imported.jobs)
        done = f"added {counted(len(imported.jobs), 'job')} to {output}: {names}"
        click.echo(done if imported.jobs else f"nothing to add to {output}")
    _report(imported.left_out)


def _kind_and_file(kind_or_file: str, file: Path | None) -> tuple[str, Path]:
    if file is not None:
        if kind_or_file not in KINDS:
            raise click.BadParameter(f"choose from {', '.join(KINDS)}", param_hint="KIND")
        return kind_or_file, file
    path = Path(kind_or_file)
    if not path.name.startswith("wrangler."):
        raise click.UsageError(
            f"name what {path} holds: cronlink import {{{'|'.join(KINDS)}}} {path}"
        )
    return "wrangler", path


def _read_definitions(
    kind: str, path: Path, binding: Binding, environment: str | None, progress: Progress
) -> Imported:
    try:
        text = path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: {error.strerror}") from None
    if kind == "cloud-scheduler":
        chosen = binding if binding.handler else None
        return cloud_scheduler.import_jobs(text, str(path), chosen, progress)
    if kind == "k8s":
        return kubernetes.import_cronjobs(text, str(path), binding, progress)
    try:
        config = wrangler.read_config(text, path.name)
        return wrangler.import_triggers(config, str(path), binding, environment, progress)
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None


@click.command("export")
@click.argument("kind", type=click.Choice(KINDS))
@click.option(
    "--app-url",
    envvar="APP_URL",
    required=True,
    show_envvar=True,
    help="Where cronlink serve answers, as the other scheduler reaches it.",
)
@click.option(
    "--pack", is_flag=True, help="wrangler: one every-minute trigger calling POST /cron/tick."
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the files into this folder instead of printing them.",
)
@click.option(
    "--project",
    default="${PROJECT_ID}",
    show_default=True,
    help="cloud-scheduler: the Google Cloud project.",
)
@click.option(
    "--location",
    default="${LOCATION}",
    show_default=True,
    help="cloud-scheduler: the region of the jobs.",
)
@click.option(
    "--secret",
    metavar="NAME",
    help="CRON_SECRET's name in the secret store (k8s: cronlink, gcloud: cron-secret).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print the files and what was left out as JSON."
)
@settings_options
def export_command(
    kind: str,
    app_url: str,
    pack: bool,
    out_dir: Path | None,
    project: str,
    location: str,
    secret: str | None,
    as_json: bool,
    config_path: Path | None,
    database_url: str | None,
    app_path: str | None,
) -> None:
    """KIND's definitions that call this cronlink's jobs: POST /cron/{job} with the secret
    from the platform's secret store (never written out), or, packed, POST /cron/tick."""
    if pack and kind != "wrangler":
        raise click.BadParameter("--pack is for wrangler", param_hint="--pack")
    if secret is not None and kind == "wrangler":
        raise click.BadParameter(
            "a Worker reads CRON_SECRET from `wrangler secret put`", param_hint="--secret"
        )
    settings = settings_from(config_path, database_url, app_path)
    jobs = [job for job in build_app(settings).jobs.values() if job.schedules]
    files: dict[str, Exported]
    if kind == "wrangler":
        quota = settings.usage.light_triggers
        now = datetime.now(UTC)
        exported = wrangler.export_triggers(jobs, app_url, pack=pack, quota=quota, now=now)
        files = {"wrangler.toml": exported, wrangler.SCRIPT_NAME: Exported(text=wrangler.SCRIPT)}
    elif kind == "k8s":
        exported = kubernetes.export_cronjobs(jobs, app_url, secret=secret or "cronlink")
        files = {"cronjobs.yaml": exported}
    else:
        exported = cloud_scheduler.export_jobs(
            jobs, app_url, project=project, location=location, secret=secret or "cron-secret"
        )
        files = {"cloud-scheduler.sh": exported}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            (out_dir / name).write_text(content.text)
    if as_json:
        print_json({"files": {n: e.text for n, e in files.items()}, "left_out": exported.left_out})
        return
    if out_dir is None:
        click.echo(exported.text, nl=False)
        if len(files) > 1:
            click.echo(
                f"# the Worker's code is written by --out DIR ({wrangler.SCRIPT_NAME})", err=True
            )
    else:
        click.echo(f"wrote {', '.join(str(out_dir / name) for name in files)}", err=True)
    _report(exported.left_out)


def _report(left_out: list[str]) -> None:
    if left_out:
        click.echo("not carried over:", err=True)
        for line in left_out:
            click.echo(f"  - {line}", err=True)
