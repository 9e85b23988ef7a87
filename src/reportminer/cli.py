"""`reportminer label | evaluate`: thin click commands over the library."""

from __future__ import annotations

import codecs
import json
import os
import sys
from pathlib import Path
from typing import Iterable

import click
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, Task,
                           TextColumn, TimeElapsedColumn)
from rich.text import Text

from cxrcore.cli import EXIT_SKIPPED, OneLineErrors, counted, printable, progress_bar
from cxrcore.errors import InputError
from cxrcore.output import FolderOf, Outputs, json_text

from . import __version__
from .cache import CacheSpec
from .choices import DEFAULT_MODEL, FORMATS, METHODS
from .lexicon import DEFAULT_SCHEMA, Lexicon, load_lexicon, schemas

err = Console(stderr=True, highlight=False)


def say(message: str) -> None:
    err.print(printable(message), markup=False, soft_wrap=True)


def _encoding(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        codecs.lookup(value)
    except LookupError:
        raise click.BadParameter(f"{value!r} is not an encoding Python knows (e.g. utf-8, latin-1, cp1252)") from None
    return value


@click.group(cls=OneLineErrors)
@click.version_option(__version__, prog_name="reportminer")
def main() -> None:
    """Label chest X-ray reports with auditable rules (see README.md)."""


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="labels.parquet to write (one row per image, or per report when images are unknown).")
@click.option("--update", "update_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Instead of -o: bring this labels.parquet (and --evidence) up to date with INPUTS, labeling only the "
                   "reports that are new or changed.")
@click.option("--prune", is_flag=True, help="With --update: drop the reports that are no longer in INPUTS.")
@click.option("--relabel-changed-rules", "relabel", is_flag=True,
              help="With --update of a file labeled with other rules: relabel the reports the changed rules touch.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the decision cache kept between runs [default: $XDG_CACHE_HOME/chestxray-toolkit, "
                   "else ~/.cache/chestxray-toolkit].")
@click.option("--no-cache", is_flag=True, help="Neither use nor keep the decision cache.")
@click.option("--evidence", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every mention with its sentence and the rule that decided it.")
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="parquet", show_default=True,
              help="parquet (docs/SPEC.md's labels.parquet), or chexpert-csv: the CheXpert labeler's CSV layout, one row "
                   "per report (Reports, then each label as 1.0, 0.0, -1.0 or blank).")
@click.option("--lexicon", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Lexicon folder (labeler.yaml, rules/, schemas/); default: the one shipped.")
@click.option("--schema", default=DEFAULT_SCHEMA, show_default=True,
              help="Label schema: a folder of the lexicon's schemas/ (chestxray14, chexpert).")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Installed spaCy pipeline to parse with.")
@click.option("--profile", help="A profile of the lexicon's conventions (conventions.yaml), e.g. clinical: differentials "
                                "and '?' uncertain, likely/probable positive, opacity words Infiltration.")
@click.option("--convention", "convention_values", multiple=True, metavar="KEY=VALUE",
              help="Set one convention (conventions.yaml; repeatable), e.g. --convention differential=uncertain.")
@click.option("--assertions", "method", type=click.Choice(METHODS), default="rules", show_default=True,
              help="How mentions are decided: graph rules, keyword (all positive) or negex (baseline).")
@click.option("--encoding", default="utf-8", show_default=True, callback=_encoding,
              help="Encoding of .txt, .csv and .jsonl inputs (and of XML that declares none and is not UTF-8).")
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1, show_default="all cores",
              help="Local processes labeling at once (1: this process only).")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="local processes, or a Dask distributed cluster (with --scheduler).")
@click.option("--scheduler", help="Dask scheduler address for --engine dask, e.g. tcp://scheduler-host:8786.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Reports per work unit (and per resumable part).")
@click.option("--resume", is_flag=True, help="Continue a run that was stopped, skipping the chunks it finished.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def label(inputs: tuple[Path, ...], output: Path, evidence: Path | None, output_format: str, lexicon: Path | None,
          schema: str, model: str, method: str, encoding: str, workers: int, engine: str, scheduler: str | None,
          chunk_size: int, resume: bool, quiet: bool, update_path: Path | None, prune: bool, relabel: bool,
          cache_dir: Path | None, no_cache: bool, profile: str | None, convention_values: tuple[str, ...]) -> None:
    """Label reports in INPUTS (folders of .xml/.txt, or .csv/.parquet/.jsonl tables)."""
    from .changes import provenance
    from .engine import Settings, fingerprint, make_engine, run_labeling
    from . import lexicon_memo
    from .known_inputs import Marks
    from .readers import ReadSettings, read_inputs

    output = _label_target(output, update_path, prune, relabel, output_format, cache_dir, no_cache)
    from .conventions import parse_overrides

    cache = None if no_cache else _cache(cache_dir)
    lex = lexicon_memo.load(lexicon, schema, profile, parse_overrides(convention_values),
                            Path(cache.path).parent if cache else None)
    if lexicon is not None:
        _require_examples(lex, model)
    settings = Settings(lexicon=lex, model=model, method=method, report_text=output_format == "chexpert-csv",
                        cache=cache)
    state = fingerprint(list(inputs), settings, chunk_size, evidence is not None, encoding)
    meta = {"version": __version__, "lexicon": lex.folder, "schema": schema, "lexicon_digest": lex.digest,
            "parser_package": model,
            "assertions": method, "inputs": [str(p) for p in inputs], "label_columns": lex.label_columns,
            "no_finding": lex.no_finding, "profile": profile, "conventions": dict(lex.conventions),
            "evidence_written": evidence is not None, **provenance(lex)}
    plan, marks = None, Marks()
    read = ReadSettings(lex.sections.table_columns, encoding, lex.limits.report_chars)
    if update_path is None:
        records = read_inputs(list(inputs), read, marks)
    else:
        from .update import start

        settings, plan, state = start(output, evidence, settings, schema, relabel, prune, state)
        records = plan.select(read_inputs(list(inputs), read, marks, plan.known_inputs()))
    runner = make_engine(engine, workers, scheduler)
    try:
        with _progress(quiet) as progress:
            task = progress.add_task("labeling", total=None)
            outcome = run_labeling(
                records, output,
                evidence, settings, meta, lex.label_columns, runner, state, chunk_size, resume,
                on_skip=lambda r: say(f"skipped {r.source}: {r.reason}"), on_progress=lambda n: progress.advance(task, n),
                inputs=[*_read(inputs), *([FolderOf(lexicon)] if lexicon else [])], merge=plan.merge if plan else None,
                marks=marks)
    except BaseException:
        runner.abort()
        raise
    runner.close()
    if plan is not None:
        say(plan.summary(outcome) + (f"; skipped {len(outcome.skipped)} (listed above)" if outcome.skipped else ""))
    else:
        say(f"labeled {counted(outcome.reports, 'report')} ({counted(outcome.rows, 'row')}) → {output}"
            + (f"; mentions → {evidence}" if evidence else "")
            + (f"; skipped {len(outcome.skipped)} (listed above)" if outcome.skipped else ""))
    if outcome.skipped:
        sys.exit(EXIT_SKIPPED)


def _label_target(output: Path | None, update_path: Path | None, prune: bool, relabel: bool, output_format: str,
                  cache_dir: Path | None, no_cache: bool) -> Path:
    """The file `label` writes: -o, or the one --update brings up to date (the options that go with each)."""
    if (output is None) == (update_path is None):
        raise click.UsageError("give -o OUTPUT to label afresh, or --update OUTPUT to bring an earlier output up to date")
    if update_path is None and (prune or relabel):
        raise click.UsageError(f"{'--prune' if prune else '--relabel-changed-rules'} goes with --update OUTPUT")
    if update_path is not None and output_format != "parquet":
        raise click.UsageError("--update works on labels.parquet; label afresh for --format chexpert-csv")
    if cache_dir is not None and no_cache:
        raise click.UsageError("--cache DIR and --no-cache contradict each other; give one")
    return output or update_path  # type: ignore[return-value]


def _cache(folder: Path | None) -> CacheSpec | None:
    """The decision cache to use: --cache DIR, else the user's cache folder (a warning and none if unusable)."""
    from .cache import default_folder, prepare

    path = prepare(folder or default_folder(), explicit=folder is not None, warn=say)
    return CacheSpec(str(path)) if path is not None else None


def _require_examples(lexicon: Lexicon, model: str) -> None:
    """A user's own lexicon is used only when every example in it still behaves as written."""
    from .errors import LexiconError
    from .lexicon_check import check_lexicon
    from .parse import load_model

    _, failures, _ = check_lexicon(lexicon, load_model(model), strict=False)
    if failures:
        raise LexiconError(f"{failures[0]}; run `reportminer check-lexicon {lexicon.folder} --schema "
                           f"{lexicon.schema.name}` to see all {len(failures)} problems")


class _RateColumn(ProgressColumn):
    """Reports per second, once there is a measurement."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed:,.0f} reports/s" if task.speed else "")


def _progress(quiet: bool) -> Progress:
    return progress_bar(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        _RateColumn(), TimeElapsedColumn(), console=err, quiet=quiet)



@main.command()
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("gold", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--uncertain", type=click.Choice(["positive", "negative"]), default="negative", show_default=True,
              help="How an uncertain (-1) label is scored.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the figures as JSON.")
@click.option("--errors", "errors_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every false positive and negative (CSV), with evidence when mentions.parquet is beside LABELS or given.")
@click.option("--evidence", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="mentions.parquet to explain errors with (default: mentions.parquet beside LABELS, if any).")
@click.option("--attributes", "attributes_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Gold side/severity/change (report_id, finding, side, severity, change) to score the evidence's "
                   "attributes against.")
@click.option("--by-rule", "by_rule", is_flag=True,
              help="Also print, for every rule that decided a mention, how often it agrees with GOLD, with examples of "
                   "its errors (needs the labels' mentions.parquet).")
@click.option("--bootstrap", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Resamples of the reports for 95% confidence intervals (0: none).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resamples.")
@click.option("--weights", "weights_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="report_id, weight per gold report (the sample.csv of `reportminer sample`): also print the "
                   "figures weighted back to the archive.")
def evaluate(labels: Path, gold: Path, uncertain: str, json_path: Path | None, errors_path: Path | None,
             evidence: Path | None, attributes_path: Path | None, bootstrap: int, seed: int,
             weights_path: Path | None, by_rule: bool) -> None:
    """Precision, recall and F1 of LABELS against GOLD (report_id + 1/0/-1/blank per finding); with the
    labels' mentions.parquet, how often each value of each convention agrees with GOLD."""
    from .evaluate import evaluate_attributes, evaluate_files, format_attributes, format_table, list_errors

    evidence = evidence or _beside(labels, "mentions.parquet")
    if attributes_path and evidence is None:
        raise click.UsageError("--attributes needs the labels' mentions.parquet (--evidence)")
    if by_rule and evidence is None:
        raise click.UsageError("--by-rule needs the labels' mentions.parquet (--evidence)")
    inputs = [labels, gold, *(p for p in (evidence, weights_path, attributes_path) if p is not None)]
    with Outputs([json_path, errors_path], inputs) as outputs:
        result = evaluate_files(labels, gold, uncertain=uncertain, bootstrap=bootstrap, seed=seed,
                                weights=weights_path)
        table = format_table(result).splitlines()
        click.echo("\n".join(table[:-1]))
        if evidence is not None:  # before the table's summary line, which stays the last line
            from .rule_scores import by_convention, format_conventions, format_rules, scored_mentions, \
                by_rule as score_rules

            lex = _labels_lexicon(labels)
            scored = scored_mentions(evidence, gold, lex.label_columns)
            result["conventions"] = by_convention(scored, lex)
            if result["conventions"]:
                click.echo(format_conventions(result["conventions"]))
            if by_rule:
                result["rules"] = score_rules(scored)
                click.echo(format_rules(result["rules"]))
        click.echo(table[-1])
        if attributes_path:
            result["attributes"] = evaluate_attributes(evidence, attributes_path, _labels_lexicon(labels))
            click.echo(format_attributes(result["attributes"]))
        if json_path:
            Path(outputs.path(json_path)).write_text(json_text(result), encoding="utf-8")
        if errors_path:
            frame = list_errors(labels, gold, uncertain=uncertain, evidence=evidence)
            frame.to_csv(outputs.path(errors_path), index=False)
        outputs.commit()
    if errors_path:
        say(f"{len(frame)} errors → {errors_path}")


def _labels_lexicon(labels: Path) -> Lexicon:
    """The lexicon a labels file was made with (its metadata), else the shipped one."""
    from cxrcore.output import read_metadata

    meta = read_metadata(labels)
    folder = meta.get("lexicon")
    conventions = meta.get("conventions") or None  # the values it was labeled under (JSON in the metadata)
    if isinstance(conventions, str):
        conventions = json.loads(conventions)
    return load_lexicon(folder if folder and Path(folder).is_dir() else None, meta.get("schema", DEFAULT_SCHEMA),
                        conventions=conventions)


def _read(inputs: Iterable[Path]) -> list[FolderOf]:
    """Report inputs as the output policy sees them: of a folder, only the reports in it are read."""
    from .readers import REPORT_SUFFIXES

    return [FolderOf(p, REPORT_SUFFIXES) for p in inputs]


def _beside(path: Path, name: str) -> Path | None:
    candidate = path.with_name(name)
    return candidate if candidate.exists() else None


_REPORTS_HELP = ("The reports LABELS was made from (a folder or table, as for `label`; repeat for several); default: "
                 "the inputs recorded in LABELS.")


def _texts(labels: Path, reports: tuple[Path, ...], encoding: str, wanted: list[str]) -> tuple[dict[str, str],
                                                                                              list[Path], list[str]]:
    """The texts of the wanted reports, the inputs read, and the wanted reports without a text (each named)."""
    from .readers import ReadSettings
    from .texts import read_texts, recorded_inputs

    inputs = list(reports) or recorded_inputs(labels)
    lex = _labels_lexicon(labels)
    texts = read_texts(inputs, ReadSettings(lex.sections.table_columns, encoding, lex.limits.report_chars), wanted)
    missing = [r for r in wanted if r not in texts]
    for report_id in missing:
        say(f"skipped report {report_id}: its text is not in {', '.join(map(str, inputs))}")
    if not texts:
        raise InputError(f"none of the {len(wanted)} reports wanted from {labels} has its text in "
                         f"{', '.join(map(str, inputs))}; give the reports it was made from with --reports")
    return texts, inputs, missing


@main.command()
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write: sample.csv, reports.jsonl, labels.parquet, mentions.parquet, README.md.")
@click.option("-n", "size", type=click.IntRange(min=1), default=200, show_default=True, help="Reports to draw.")
@click.option("--evidence", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="mentions.parquet of LABELS (default: the one beside LABELS, if any).")
@click.option("--reports", multiple=True, type=click.Path(exists=True, path_type=Path), help=_REPORTS_HELP)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the draw.")
@click.option("--min-per-stratum", type=click.IntRange(min=1), default=10, show_default=True,
              help="Reports every stratum gets at least (all it has when fewer), if n allows.")
@click.option("--encoding", default="utf-8", show_default=True, callback=_encoding, help="Encoding of text inputs.")
def sample(labels: Path, output: Path, size: int, evidence: Path | None, reports: tuple[Path, ...], seed: int,
           min_per_stratum: int, encoding: str) -> None:
    """Draw a stratified, weighted sample of LABELS to annotate by hand, with the whole report texts."""
    from cxrcore.labels import read_labels
    from cxrcore.output import OutputFolder

    from .sample import Design, assign_strata, draw, report_values, with_weights
    from .sample_folder import write_sample

    evidence = evidence or _beside(labels, "mentions.parquet")
    values = report_values(read_labels(labels))
    strata, design = assign_strata(values), Design(size, seed, min_per_stratum)
    drawn = draw(strata, design)
    texts, inputs, missing = _texts(labels, reports, encoding, list(drawn["report_id"]))
    drawn = with_weights(drawn[drawn["report_id"].isin(list(texts))], strata.value_counts().to_dict())
    sources = [labels, *_read(inputs), *([evidence] if evidence else [])]
    with OutputFolder(output, "reportminer sample", sources) as folder:
        write_sample(folder, labels, evidence, drawn, texts, values, design)
        folder.commit()
    say(f"sampled {len(drawn)} of {len(values)} reports from {drawn['stratum'].nunique()} strata → {output}"
        + (f"; skipped {len(missing)} without text (listed above)" if missing else ""))
    if missing:
        sys.exit(EXIT_SKIPPED)


@main.command()
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The HTML page to write (one file; open it in a browser, no server).")
@click.option("--evidence", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="mentions.parquet of LABELS (default: the one beside LABELS, if any).")
@click.option("--reports", multiple=True, type=click.Path(exists=True, path_type=Path), help=_REPORTS_HELP)
@click.option("--gold", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A gold CSV (as `evaluate` reads): show the evaluation and every error, filterable.")
@click.option("--uncertain", type=click.Choice(["positive", "negative"]), default="negative", show_default=True,
              help="How an uncertain (-1) label is scored against --gold.")
@click.option("--encoding", default="utf-8", show_default=True, callback=_encoding, help="Encoding of text inputs.")
@click.option("--embed-paths", is_flag=True,
              help="Name LABELS, --evidence and --gold on the page as given (default: file names only, so a shared "
                   "page does not show your folders).")
def audit(labels: Path, output: Path, evidence: Path | None, reports: tuple[Path, ...], gold: Path | None,
          uncertain: str, encoding: str, embed_paths: bool) -> None:
    """Write one self-contained HTML page to audit LABELS and annotate a gold subset by keyboard."""
    from cxrcore.labels import read_labels
    from cxrcore.output import exclusive

    from .audit import GoldFile, label_rows, page_data
    from .audit_html import render

    evidence = evidence or _beside(labels, "mentions.parquet")
    table = read_labels(labels)
    table.require("report_id")
    texts, inputs, missing = _texts(labels, reports, encoding, list(label_rows(table).index))
    sources = [labels, *_read(inputs), *(p for p in (evidence, gold) if p is not None)]
    with Outputs([output], sources) as outputs, exclusive(output):
        data, warnings = page_data(labels, texts, evidence, GoldFile(gold, uncertain) if gold else None,
                                   _beside(labels, "sample.csv"), _labels_lexicon(labels).schema, embed_paths)
        for warning in warnings:
            say(f"warning: {warning}")
        Path(outputs.path(output)).write_text(render(data, labels.name), encoding="utf-8")
        outputs.commit()
    say(f"{len(data['reports'])} reports → {output}" + (f" ({len(data['gold']['errors'])} errors against {gold})"
                                                         if gold else "")
        + (f"; skipped {len(missing)} without text (listed above)" if missing else ""))
    if missing:
        sys.exit(EXIT_SKIPPED)



@main.command()
@click.argument("labels", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="labels.parquet to write, with a split column.")
@click.option("--manifest", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of images for LABELS: report_id, image_id, patient_id, image_path (view_position, split optional).")
@click.option("--nih", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="NIH Data_Entry_2017*.csv(.gz): build the dataset from NIH's own labels instead of LABELS.")
@click.option("--chexpert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A CheXpert label CSV (train.csv, valid.csv): build the dataset from it (schema chexpert).")
@click.option("--mimic-labels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="MIMIC-CXR-JPG mimic-cxr-2.0.0-chexpert.csv (or -negbio.csv), with --mimic-metadata.")
@click.option("--mimic-metadata", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="MIMIC-CXR-JPG mimic-cxr-2.0.0-metadata.csv: the images of each study.")
@click.option("--mimic-split", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="MIMIC-CXR-JPG mimic-cxr-2.0.0-split.csv: the official split (validate becomes val).")
@click.option("--train-val-list", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="NIH train_val_list.txt (with --test-list): the official split.")
@click.option("--test-list", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="NIH test_list.txt.")
@click.option("--val-fraction", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Share of train_val patients carved out as val (official lists).")
@click.option("--split-fractions", default="0.7,0.1,0.2", show_default=True,
              help="train,val,test shares of patients when no split is given.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the patient draws.")
@click.option("--frontal-only", is_flag=True, help="Keep PA and AP views only.")
@click.option("--boxes", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="NIH BBox_List_2017.csv: write a clean boxes table (boxes.csv) beside the output.")
@click.option("--lexicon", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Lexicon folder giving the finding names (default: the one shipped).")
@click.option("--schema", show_default="chexpert for --chexpert and --mimic-labels, else chestxray14",
              help="The lexicon's schema giving the finding names.")
def dataset(labels: Path | None, output: Path, manifest: Path | None, nih: Path | None, chexpert: Path | None,
            mimic_labels: Path | None, mimic_metadata: Path | None, mimic_split: Path | None,
            train_val_list: Path | None, test_list: Path | None, val_fraction: float, split_fractions: str, seed: int,
            frontal_only: bool, boxes: Path | None, lexicon: Path | None, schema: str | None) -> None:
    """Build a dataset (labels + patient-safe split) from LABELS + --manifest, or from --nih, --chexpert or
    --mimic-labels with --mimic-metadata."""
    from cxrcore.boxes import read_boxes
    from cxrcore.output import exclusive
    from cxrcore.splits import SPLITS, split_summary

    from . import dataset as ds

    sources = [s for s in (labels, nih, chexpert, mimic_labels) if s is not None]
    if len(sources) != 1:
        raise click.UsageError("give one source: LABELS with --manifest, --nih Data_Entry_2017.csv, --chexpert "
                               "train.csv, or --mimic-labels with --mimic-metadata")
    if (mimic_labels is None) != (mimic_metadata is None):
        raise click.UsageError("--mimic-labels and --mimic-metadata go together")
    if labels is not None and manifest is None:
        raise click.UsageError("LABELS needs --manifest (the images of each report)")
    if (train_val_list is None) != (test_list is None):
        raise click.UsageError("--train-val-list and --test-list go together")
    inputs = [p for p in (labels, manifest, nih, chexpert, mimic_labels, mimic_metadata, mimic_split, train_val_list,
                          test_list, boxes, FolderOf(lexicon) if lexicon else None) if p]
    boxes_target = output.with_name("boxes.csv") if boxes is not None else None
    lex = load_lexicon(lexicon, schema or ("chexpert" if chexpert or mimic_labels else DEFAULT_SCHEMA))
    with Outputs([output, boxes_target], inputs) as outputs, exclusive(output):
        frame, columns, source = _dataset_rows(labels, manifest, nih, chexpert, (mimic_labels, mimic_metadata,
                                                                               mimic_split), lex)
        if frontal_only:
            frame = ds.keep_frontal(frame)
        frame["split"], method = _dataset_split(frame, train_val_list, test_list, val_fraction, split_fractions, seed)
        summary = split_summary(frame)
        meta = {"version": __version__, "source": source, "split_method": method, "splits": summary,
                "label_columns": columns, "no_finding": columns[-1], "frontal_only": frontal_only}
        ds.write_dataset(frame, outputs.path(output), columns, meta)
        table = read_boxes(boxes, lex.finding_names) if boxes is not None else None
        if table is not None:
            table.to_csv(outputs.path(boxes_target), index=False)
        outputs.commit()
    parts = "; ".join(f"{s} {summary[s]['images']:,} images / {summary[s]['patients']:,} patients" for s in SPLITS)
    say(f"{len(frame):,} images, {frame['patient_id'].nunique():,} patients → {output}\n{parts}; "
        f"patients in two splits: {summary['shared_patients']['count']}")
    if table is not None:
        say(f"{len(table):,} boxes on {table['Image Index'].nunique():,} images → {boxes_target}")


def _dataset_rows(labels: Path | None, manifest: Path | None, nih: Path | None, chexpert: Path | None,
                  mimic: tuple[Path | None, Path | None, Path | None], lex: Lexicon):
    """(rows, label columns, source description) from NIH's, CheXpert's or MIMIC-CXR-JPG's label files,
    or from LABELS joined to a manifest."""
    from cxrcore.labels import read_labels

    from . import dataset as ds

    if nih is not None:
        return ds.read_nih_entries(nih, lex.finding_names, lex.no_finding), lex.label_columns, str(nih)
    if chexpert is not None:
        return ds.read_chexpert(chexpert, lex.finding_names, lex.no_finding), lex.label_columns, str(chexpert)
    if mimic[0] is not None:
        frame = ds.read_mimic(*mimic, lex.finding_names, lex.no_finding)
        return frame, lex.label_columns, " + ".join(str(p) for p in mimic if p is not None)
    columns = read_labels(labels).label_columns
    frame, dropped = ds.join_manifest(labels, manifest, columns)
    for message in dropped[:5]:
        say(f"warning: {message}")
    if len(dropped) > 5:
        say(f"warning: ... and {len(dropped) - 5} more images without labels")
    return frame, columns, f"{labels} + {manifest}"


def _dataset_split(frame, train_val_list: Path | None, test_list: Path | None, val_fraction: float,
                   split_fractions: str, seed: int):
    """(split column, how it was made): official lists, else the manifest's column, else by patient."""
    from cxrcore.splits import patient_splits

    from . import dataset as ds

    if train_val_list is not None:
        return (ds.official_splits(frame, train_val_list, test_list, val_fraction, seed),
                f"official lists ({train_val_list.name}, {test_list.name}); val = {val_fraction} of train_val "
                f"patients, seed {seed}")
    if "split" in frame.columns:
        return ds.given_splits(frame), "the source's split column"
    try:
        fractions = tuple(float(x) for x in split_fractions.split(","))
    except ValueError:
        raise click.BadParameter(f"{split_fractions!r} is not three numbers such as 0.7,0.1,0.2") from None
    if len(fractions) != 3:
        raise click.BadParameter(f"{split_fractions!r} needs three numbers: train,val,test")
    return patient_splits(frame["patient_id"], fractions, seed), f"by patient, fractions {split_fractions}, seed {seed}"


@main.command()
@click.argument("labels", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for counts, co-occurrence (CSV and PNG), agreement and dataset_card.md.")
@click.option("--compare", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Another labels.parquet (e.g. NIH's own labels) to measure agreement with.")
def stats(labels: Path, out_dir: Path, compare: Path | None) -> None:
    """Counts per finding and split, multi-label counts, co-occurrence, agreement, a dataset card."""
    from .stats import write_stats

    written = write_stats(labels, out_dir, compare)
    say(f"wrote {', '.join(sorted(written))} → {out_dir}")


@main.command("check-lexicon")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--schema", "only", help="Check this schema only (default: every schema in the folder).")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Installed spaCy pipeline to parse with.")
def check_lexicon_command(folder: Path, only: str | None, model: str) -> None:
    """Validate a lexicon FOLDER and run every example in it (each schema) through the real labeler."""
    bad, names = 0, [only] if only else schemas(folder) or [DEFAULT_SCHEMA]
    # Every file is read and checked against its model (lexicon_models.py, as `label --lexicon` and an editor with
    # lexicons/schema/ check it), or the folder refused, before the parser is even imported: a hostile lexicon
    # costs a second and about 100 MB, not the parser's.
    lexicons = [load_lexicon(folder, name) for name in names]
    from .conventions import example_failures
    from .lexicon_check import check_lexicon
    from .parse import load_model

    nlp = load_model(model)
    not_applying: set[str] | None = None
    for name, lex in zip(names, lexicons):
        count, failures, skipped = check_lexicon(lex, nlp, strict=len(names) == 1)
        not_applying = skipped if not_applying is None else not_applying & skipped
        for failure in failures:
            click.echo(str(failure))
        click.echo(f"{folder} ({name}): {len(lex.findings)} findings, {len(lex.rules)} rules, {count} examples: "
                   + (f"{len(failures)} do not behave as written" if failures else "every one behaves as written"))
        bad += len(failures)
        count, failures = example_failures(folder, name, nlp)
        for line in failures:
            click.echo(line)
        if count:
            click.echo(f"{folder} ({name}): {count} convention examples: "
                       + (f"{len(failures)} do not behave as written" if failures else "every one behaves as written"))
        bad += len(failures)
    for key in sorted(not_applying or ()):
        click.echo(f"{key}: names no finding of any schema ({', '.join(names)})")
        bad += 1
    if bad:
        raise click.ClickException(f"{bad} examples do not behave as written (listed above)")


@main.command()
@click.argument("sentence")
@click.option("--finding", help="Explain only the mentions of this finding.")
@click.option("--lexicon", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Lexicon folder (default: the one shipped).")
@click.option("--schema", default=DEFAULT_SCHEMA, show_default=True, help="The lexicon's schema.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Installed spaCy pipeline to parse with.")
def explain(sentence: str, finding: str | None, lexicon: Path | None, schema: str, model: str) -> None:
    """Show how SENTENCE is labeled: its mentions, the parse around each, every rule that matched, the decision
    (a longer text is cut into sentences as `label` cuts a report, within the same limits)."""
    from .explain import explain_text
    from .labeler import Labeler
    from .parse import load_model

    lex = load_lexicon(lexicon, schema)
    if finding is not None and finding not in lex.finding_names:
        raise click.BadParameter(f"{finding!r} is not a finding of this lexicon ({', '.join(lex.finding_names)})",
                                 param_hint="--finding")
    click.echo(explain_text(sentence, Labeler(lex, load_model(model)), finding))


if __name__ == "__main__":
    main()
