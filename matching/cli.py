"""``singleid legacy …``: import, match, explain and evaluate legacy accounts.

The commands call the same services as the gRPC API, on the database the
settings name.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from click._termui_impl import ProgressBar

from singleid.clitools import app_context
from singleid.errors import SingleIdError
from singleid.matching.service import ImportService, MatchingService, Reject
from singleid.matching.service.evaluation import evaluate
from singleid.matching.service.importer import load_mapping, read_file
from singleid.matching.service.types import AccountRef
from singleid.matching.waterfall import draw_waterfall


def commands() -> list[click.Command]:
    """The ``singleid.commands`` entry point."""
    return [legacy]


def _account(text: str) -> AccountRef:
    product, sep, account_id = text.partition(":")
    if not sep or not product or not account_id:
        raise click.BadParameter(f"expected PRODUCT:ACCOUNT_ID, got {text!r}")
    return AccountRef(product, account_id)


def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            count += chunk.count(b"\n")
    return count


@click.group()
def legacy() -> None:
    """Legacy accounts: import, match, review, explain, evaluate."""


@legacy.command("import")
@click.option("--product", required=True, help="The product code the accounts belong to.")
@click.option("--encoding", default="utf-8", show_default=True,
              help="The file's encoding, e.g. cp1251.")
@click.option("--format", "file_format", type=click.Choice(["csv", "jsonl"]), default=None,
              help="Default: by the file's suffix (.jsonl/.ndjson is JSONL, else CSV).")
@click.option("--mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON {"source column": "contract column"} renaming the file\'s columns.')
@click.option("--reject-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Where rejected rows go (JSON lines); default FILE.rejects.jsonl.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def legacy_import(product: str, encoding: str, file_format: str | None, mapping: Path | None,
                  reject_file: Path | None, no_progress: bool, file: Path) -> None:
    """Import a CSV or JSONL file of legacy accounts into PRODUCT.

    Columns (any may be empty but account_id): account_id, last_name, first_name,
    middle_name, birth_date, phone, email, passport, address, city, created_at,
    password_hash. Each account gets its own central ID; bad rows go to the reject
    file with their line number and reason; importing again changes nothing.
    """
    try:
        "".encode(encoding)
    except LookupError:
        raise click.BadParameter(f"unknown encoding {encoding!r}",
                                 param_hint="--encoding") from None
    renames = load_mapping(mapping) if mapping else None
    reject_path = reject_file or file.with_name(file.name + ".rejects.jsonl")
    total = 0 if no_progress else max(_count_lines(file) - 1, 0)
    with app_context() as context, reject_path.open("w", encoding="utf-8") as rejects:
        def on_reject(item: Reject) -> None:
            rejects.write(item.to_json() + "\n")

        rows = read_file(file, encoding=encoding, mapping=renames, file_format=file_format or "")
        importer = ImportService(context.db, context.keyring)
        if no_progress:
            summary = importer.import_rows(product, rows, on_reject=on_reject)
        else:
            bar: ProgressBar[int] = click.progressbar(
                length=total, label=f"importing into {product}", file=sys.stderr)
            with bar:
                done = [0]

                def on_progress(read: int) -> None:
                    bar.update(read - done[0])
                    done[0] = read

                summary = importer.import_rows(product, rows, on_reject=on_reject,
                                               on_progress=on_progress)
    click.echo(json.dumps({"read": summary.read, "imported": summary.imported,
                           "updated": summary.updated, "unchanged": summary.unchanged,
                           "rejected": summary.rejected, "reject_file": str(reject_path)}))


@legacy.command("match")
@click.option("--reuse-model", is_flag=True, help="Use the stored parameters, do not re-fit.")
def legacy_match(reuse_model: bool) -> None:
    """Batch matching: fit, merge the confident pairs, queue the uncertain ones."""
    with app_context() as context:
        summary = MatchingService(context.db, context.keyring).run_batch(refit=not reuse_model)
    click.echo(json.dumps({"accounts": summary.accounts,
                           "candidate_pairs": summary.candidate_pairs,
                           "auto_merges": summary.auto_merges, "review": summary.review,
                           "clusters": summary.clusters}))


@legacy.command("explain")
@click.argument("a")
@click.argument("b")
@click.option("--png", type=click.Path(dir_okay=False, path_type=Path),
              help="Also draw the waterfall chart into this PNG file.")
def legacy_explain(a: str, b: str, png: Path | None) -> None:
    """Why two accounts (PRODUCT:ACCOUNT_ID each) do or do not match."""
    left, right = _account(a), _account(b)
    with app_context() as context:
        result = MatchingService(context.db, context.keyring).explain(left, right)
    click.echo(f"prior {result.prior_weight:+.2f}")
    for f in result.fields:
        click.echo(f"{f.comparison:<12} {f.level:<24} {f.weight:+.2f}")
    click.echo(f"match weight {result.match_weight:+.2f} | probability "
               f"{result.probability:.6f} | {result.action}"
               + (f" | hard rules {','.join(result.hard_rules)}" if result.hard_rules else ""))
    if png is not None:
        draw_waterfall(result, png)
        click.echo(f"waterfall: {png}")


@legacy.command("evaluate")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--truth-column", required=True, help="The column naming the true person.")
@click.option("--hard-negative-column", default="",
              help="A column grouping look-alike different persons.")
@click.option("--encoding", default="utf-8", show_default=True)
def legacy_evaluate(file: Path, truth_column: str, hard_negative_column: str,
                    encoding: str) -> None:
    """Import FILE into a fresh temporary store, match, and score against the truth.

    The last line is the summary:
    pairwise F1 x | cluster F1 y | wrong auto-merges n | review k
    """
    try:
        report = evaluate(file, truth_column=truth_column,
                          hard_negative_column=hard_negative_column, encoding=encoding,
                          progress=lambda message: click.echo(message, err=True))
    except SingleIdError as exc:
        raise click.ClickException(f"{exc.reason}: {exc.message}") from None
    for line in report.lines():
        click.echo(line)
