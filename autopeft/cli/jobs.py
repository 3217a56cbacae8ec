"""``autopeft submit``, ``jobs``, ``logs``, ``cancel``: studies as Ray jobs on a shared cluster.

The laptop submits and may then go away: the study runs as ``autopeft search`` on the cluster.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from time import sleep
from typing import Any, Optional

import typer
from rich.table import Table

from autopeft.cli import _inputs
from autopeft.cli._output import console, ctrl_c_stops, fail, labelled, out
from autopeft.errors import AutoPeftError

ADDRESS = typer.Option(None, "--address", "-a", help="The Ray dashboard, where Ray's job service listens "
                       "(http://HEAD:8265); default: RAY_API_SERVER_ADDRESS.")
TOKEN_FILE = typer.Option(None, "--token-file", help="A file holding the cluster's Ray token (token "
                          "authentication); default: RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH.")
LOCAL_TRACKING = typer.Option(None, "--tracking-uri", help="Where this machine reaches the studies' MLflow, "
                              "when it is not the address the cluster uses.")


def submit(
    config: Optional[Path] = _inputs.CONFIG,
    model: Optional[str] = _inputs.MODEL,
    train: Optional[str] = _inputs.TRAIN,
    test: Optional[str] = _inputs.TEST,
    validation: Optional[str] = _inputs.VALIDATION,
    time: Optional[str] = _inputs.TIME,
    label: Optional[str] = _inputs.LABEL,
    text: Optional[list[str]] = _inputs.TEXT,
    task: Optional[str] = _inputs.TASK,
    encoding: Optional[str] = _inputs.ENCODING,
    overrides: Optional[list[str]] = _inputs.OVERRIDES,
    trials: Optional[int] = typer.Option(None, help="Override budget.trials."),
    max_steps: Optional[int] = typer.Option(None, help="Override budget.max_steps."),
    study_name: Optional[str] = typer.Option(None, help="Override study_name."),
    tracking_uri: Optional[str] = typer.Option(None, help="The MLflow the cluster writes to (a server it reaches)."),
    output_dir: Optional[str] = typer.Option(None, help="Where the study's outputs go on the cluster "
                                             "(default: the config's when absolute, else ~/autopeft-runs)."),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue this study (cancelled, or its driver "
                                         "died) as a new job, instead of submitting a new one."),
    address: Optional[str] = ADDRESS,
    token_file: Optional[Path] = TOKEN_FILE,
) -> None:
    """Submit a study to a Ray cluster as a Ray job and return at once (same inputs as search).

    Local data files, a local space file and a local model folder travel with the job (100 MiB
    at most, Ray's upload limit); data on S3 or the Hub is passed by reference."""
    try:
        if resume is None:
            flags: dict[str, Any] = {"data.encoding": encoding, "budget.trials": trials, "budget.max_steps": max_steps,
                                     "tracking.uri": tracking_uri}
            request, parsed = _inputs.parse_inputs(config, model, train, test, validation, time, label, text,
                                                   task, overrides, flags)
        # deferred: the service imports Ray and MLflow; --help and bad flags answer without them
        from autopeft.service import connect, experiment_url, submit_resume, submit_study

        # Ray's job SDK logs each step of the upload at INFO; the command says what travelled itself
        logging.getLogger("ray").setLevel(logging.WARNING)

        if resume is not None:
            job = submit_resume(connect(address, token_file=token_file), resume, output_dir=output_dir,
                                on_note=_note)
            out.print(f"submitted: resume of study {job.study} as job {job.job_id} on {job.cluster.address}",
                      highlight=False, soft_wrap=True)
        else:  # the inputs are checked and staged before the cluster is asked anything
            job, staged = submit_study(lambda: connect(address, token_file=token_file), config=config,
                                       request=request, overrides=parsed, output_dir=output_dir,
                                       study_name=study_name, on_note=_note)
            travelled = ", ".join(f"{f.field} {f.source.name} ({_mib(f.size)})" for f in staged.files)
            out.print(f"submitted: study {job.study} as job {job.job_id} on {job.cluster.address}\n"
                      f"  travelled with it ({_mib(staged.size)}): {travelled or 'no local files'}",
                      highlight=False, soft_wrap=True)
    except AutoPeftError as exc:
        fail(exc)
        return
    meta = job.metadata
    link = experiment_url(meta.tracking_uri or "", meta.experiment) or meta.tracking_uri
    lines = [f"  MLflow: {link} (experiment {meta.experiment or 'named on the cluster'}; the study run "
             f"{job.study} appears there when the job starts)",
             f"  outputs on the cluster: {meta.output_dir}",
             f"  follow: autopeft logs {job.job_id} --follow · list: autopeft jobs · stop: autopeft cancel {job.job_id}"]
    if meta.study_slot:
        lines.insert(0, "  it waits as pending while the cluster's study slots (autopeft_study) are taken")
    out.print("\n".join(lines), highlight=False, soft_wrap=True)


def jobs(
    address: Optional[str] = ADDRESS,
    token_file: Optional[Path] = TOKEN_FILE,
    tracking_uri: Optional[str] = LOCAL_TRACKING,
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh until Ctrl-C."),
    interval: float = typer.Option(5.0, min=1.0, help="Seconds between refreshes with --watch."),
    limit: int = typer.Option(20, min=1, help="Show at most this many jobs, newest first."),
) -> None:
    """The studies on the cluster: job, study, who submitted it, state, trials of the budget,
    the best value so far and the registered version (figures from MLflow)."""
    try:
        # deferred: the service imports Ray and MLflow; --help answers without them
        from autopeft.service import connect, study_jobs

        cluster = connect(address, token_file=token_file)
        if not watch:
            _show(show_jobs(study_jobs(cluster)[:limit], tracking_uri))
            return
        with ctrl_c_stops():
            if out.is_terminal:
                from rich.live import Live  # only for a terminal

                with Live(show_jobs(study_jobs(cluster)[:limit], tracking_uri), console=out) as live:
                    while True:
                        sleep(interval)
                        live.update(show_jobs(study_jobs(cluster)[:limit], tracking_uri))
            while True:  # a log: the rows again every interval
                _show(show_jobs(study_jobs(cluster)[:limit], tracking_uri))
                sleep(interval)
    except AutoPeftError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


COLUMNS = ("job", "study", "submitter", "state", "trials", "best", "registered")


def job_rows(found: list[Any], tracking_uri: str | None) -> list[tuple[str, ...]]:
    """One row per job; MLflow's figures where this machine reaches it ('-' where not)."""
    rows: list[tuple[str, ...]] = []
    for job in found:
        state = job.listed_state or job.status()  # listed with the rest: no request per row
        trials, best, registered = "-", "-", "-"
        try:
            figures = job.figures(tracking_uri)
        except Exception:  # noqa: BLE001 - MLflow unreachable from this machine: the job's own fields still show
            figures = None
        if figures is not None:
            trials = figures.trials_line()
            if figures.best is not None:
                best = f"{figures.metric} {figures.best:.4f}"
            registered = f"version {figures.registered_version}" if figures.registered_version else "-"
        elif job.metadata.trials:
            trials = f"0/{job.metadata.trials}"
        if state == "pending" and job.metadata.study_slot:
            state = "pending (waiting for a study slot)"
        rows.append((job.job_id, job.study, job.metadata.submitter or "-", state, trials, best, registered))
    return rows


def show_jobs(found: list[Any], tracking_uri: str | None) -> Any:
    """A table on a terminal; off one (a pipe, a log), tab-separated lines under a header."""
    rows = job_rows(found, tracking_uri)
    if not out.is_terminal:
        return "\n".join("\t".join(row) for row in [COLUMNS, *rows])
    table = Table(title=f"autopeft studies on the cluster ({len(rows)} shown)")
    for column in COLUMNS:
        table.add_column(column, no_wrap=column == "job")
    for row in rows:
        table.add_row(*row)
    return table


def logs(
    job: str = typer.Argument(..., help="The job id, or a study name (its latest job)."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job ends."),
    address: Optional[str] = ADDRESS,
    token_file: Optional[Path] = TOKEN_FILE,
) -> None:
    """The study's log on the cluster: the inferred choices, one line per trial event, summaries."""
    try:
        # deferred: the service imports Ray and MLflow; --help answers without them
        from autopeft.service import connect, find_job

        found = find_job(connect(address, token_file=token_file), job)
        if follow:
            with ctrl_c_stops():
                found.follow(_write)
        else:
            sys.stdout.write(found.logs())
    except AutoPeftError as exc:
        fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


def cancel(
    job: str = typer.Argument(..., help="The job id, or a study name (its latest job)."),
    address: Optional[str] = ADDRESS,
    token_file: Optional[Path] = TOKEN_FILE,
    tracking_uri: Optional[str] = LOCAL_TRACKING,
) -> None:
    """Stop a study: its running trials stop, its MLflow run ends KILLED with who cancelled and
    when, finished trials are kept; `autopeft submit --resume STUDY` continues it."""
    try:
        # deferred: the service imports Ray and MLflow; --help answers without them
        from autopeft.service import connect, find_job

        found = find_job(connect(address, token_file=token_file), job)
        with console.status(f"stopping job {found.job_id} (the study closes its runs first)..."):
            state = found.cancel(tracking_uri=tracking_uri, on_note=_note)
    except AutoPeftError as exc:
        fail(exc)
        return
    except TimeoutError as exc:
        console.print(labelled("error", "bold red", str(exc)), highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if state != "cancelled":
        out.print(f"job {found.job_id} (study {found.study}) had already ended: {state}", highlight=False)
        return
    out.print(f"cancelled job {found.job_id} (study {found.study}); continue it with: "
              f"autopeft submit --resume {found.study}", highlight=False, soft_wrap=True)


def _mib(size: int) -> str:
    return f"{size / 1024**2:.1f} MiB" if size >= 1024**2 else f"{size / 1024:.0f} KiB"


def _show(shown: Any) -> None:
    if isinstance(shown, str):  # plain lines, tabs kept (rich would expand them to spaces)
        typer.echo(shown)
    else:
        out.print(shown)


def _write(chunk: str) -> None:
    sys.stdout.write(chunk)
    sys.stdout.flush()  # followed as it is written: a pipe would hold it back


def _note(line: str) -> None:
    console.print(labelled("note", "yellow", line), highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(jobs)
    app.command()(logs)
    app.command()(cancel)
