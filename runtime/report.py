"""A fer-run JSON Lines file turned into a per-track emotion report: a PNG of the emotions over time, a table
(CSV, Markdown) and one self-contained HTML page with both.

    run = read_run("out.jsonl")          # FerError for a file that is not fer-run's --json output
    tracks = summarize(run)              # one TrackSummary per (source, track); untracked faces per source
    write_png(run, tracks, "out.png")    # needs matplotlib (the [report] extra); the rest needs numpy only

Time shares weigh each frame by how long it was on screen: the time to its source's next frame (the source's
usual frame interval for the last frame and across a gap of over a second, e.g. a stream that reconnected).
A track's duration runs from its first frame to the end of its last (last - first + one frame interval).
"""

from __future__ import annotations

import base64
import csv
import datetime
import html
import io
import json
import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from fer_engine.cli import excerpt as _excerpt
from fer_engine.errors import FerError
from fer_engine.spec import LABELS

# One colour per emotion, the same in every panel, table and page (unknown labels get the leftovers).
COLORS: Dict[str, str] = {
    "angry": "#d62728", "disgust": "#8c9a2b", "fear": "#9467bd", "happy": "#f2c12e",
    "sad": "#1f77b4", "surprise": "#ff7f0e", "neutral": "#a8a8a8",
}
SPARE_COLORS = ("#17becf", "#e377c2", "#8c564b", "#2ca02c", "#7f7f7f", "#bcbd22")
UNSEEN = "#e6e6e6"  # a track's span where its face was not detected
LONG_GAP = 1.0  # seconds between frames beyond which the frame before a gap counts for one usual interval


def color(label: str, labels: Sequence[str] = LABELS) -> str:
    if label in COLORS:
        return COLORS[label]
    others = [name for name in labels if name not in COLORS]
    return SPARE_COLORS[others.index(label) % len(SPARE_COLORS)] if label in others else "#444444"


@dataclass
class Faces:
    """The faces of one track (or a source's untracked faces), in time order."""

    times: np.ndarray  # (n,) seconds
    weights: np.ndarray  # (n,) seconds each counts for: until its source's next frame
    labels: np.ndarray  # (n,) the face's label, an index into Run.labels
    probs: np.ndarray  # (n, len(Run.labels))

    def __len__(self) -> int:
        return len(self.times)


@dataclass
class Run:
    path: Path
    records: int  # frame records read
    labels: Tuple[str, ...]
    sources: Dict[int, np.ndarray]  # source -> sorted frame times
    intervals: Dict[int, float]  # source -> usual frame interval (median), 0 for a single frame
    tracks: Dict[Tuple[int, Optional[int]], Faces]  # (source, track or None) -> its faces
    faces: int
    warnings: List[str] = field(default_factory=list)

    @property
    def start(self) -> float:
        return min(float(t[0]) for t in self.sources.values())

    @property
    def end(self) -> float:
        return max(float(t[-1]) + self.intervals[s] for s, t in self.sources.items())


@dataclass
class TrackSummary:
    source: int
    track: Optional[int]  # None: the untracked faces of a source (independent images), one row for all
    first: float
    last: float
    duration: float
    frames: int  # frames the track is in (for untracked rows: faces)
    dominant: str
    shares: Dict[str, float]  # label -> share of the track's time (untracked rows: of its faces)
    faces: Optional[Faces] = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"track {self.track}" if self.track is not None else "untracked faces"


# ---- reading ------------------------------------------------------------------------------------------
def read_run(path: Path | str) -> Run:
    """Read and check fer-run's JSON Lines. FerError, naming the file and line, for what is not; a last line
    cut short (an interrupted run) is skipped with a warning in ``Run.warnings``. Reads line by line, keeping
    the numbers only: an hour of video with a few faces fits in little memory."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise FerError(f"{path} is a folder: give the JSON Lines file that fer-run --json wrote, e.g. {path / 'out.jsonl'}")
    if not path.exists():
        raise FerError(f"{path}: file not found (fer-run --json PATH writes one)")
    collected = _Collected(path)
    pending: Optional[Tuple[int, str, str, bool]] = None  # a line that is not JSON: an error unless it is the last
    try:
        with open(path, "rb") as handle:
            for number, raw in enumerate(handle, 1):
                if not raw.strip():
                    continue
                if pending:
                    raise _not_json(path, *pending, first=not collected.records)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError:
                    if not collected.records:
                        raise FerError(f"{path} is not a text file: give the JSON Lines file that fer-run --json "
                                       "wrote") from None
                    raise FerError(f"{path} line {number} is not text (not UTF-8): {_excerpt(repr(raw))}") from None
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    pending = (number, line, _reason(exc), raw.endswith(b"\n"))
                    continue
                collected.add(record, number)
    except OSError as exc:
        raise FerError(f"cannot read {path}: {exc.strerror or exc}") from None
    if pending:
        if not collected.records:
            raise _not_json(path, *pending, first=True)
        number, _, _, ended = pending
        what = "not JSON" if ended else "cut short"
        collected.warnings.append(f"{path} line {number} is {what} (an interrupted run?): skipped")
    if not collected.records:
        raise FerError(f"{path} is empty: no frames to report (did the run stop before its first frame?)")
    return collected.run()


def _not_json(path: Path, number: int, line: str, reason: str, ended: bool, first: bool) -> FerError:
    hint = " (is this fer-run's --json output?)" if first else ""
    return FerError(f"{path} line {number} is not JSON ({reason}): {_excerpt(line)}{hint}")


class _Collected:
    """Frame records as numbers: per source its frame times, per track its times, labels and probabilities
    (a flat float32 array per track, one row of ``len(self.columns)`` per face)."""

    def __init__(self, path: Path):
        self.path = path
        self.records = 0
        self.faces = 0
        self.warnings: List[str] = []
        self.columns: Dict[str, int] = {}  # label -> column, in the order first seen
        self.source_times: Dict[int, array] = {}
        self.tracks: Dict[Tuple[int, Optional[int]], Tuple[array, array, array]] = {}  # times, labels, probs

    def add(self, record: object, number: int) -> None:
        where = f"{self.path} line {number}"
        if not isinstance(record, dict) or "faces" not in record or "time" not in record:
            raise FerError(f"{where} is not a fer-run frame record (an object with \"time\" and \"faces\"): "
                           f"{_excerpt(json.dumps(record))}")
        time, source, faces = record["time"], record.get("source", 0), record["faces"]
        if not _is_number(time):
            raise FerError(f"{where}: \"time\" must be a number of seconds, not {_excerpt(json.dumps(time))}")
        if not isinstance(source, int) or isinstance(source, bool):
            raise FerError(f"{where}: \"source\" must be a whole number, not {_excerpt(json.dumps(source))}")
        if not isinstance(faces, list):
            raise FerError(f"{where}: \"faces\" must be a list, not {_excerpt(json.dumps(faces))}")
        for face in faces:
            probs = face.get("probs") if isinstance(face, dict) else None
            if not isinstance(probs, dict) or not probs or not all(_is_number(p) for p in probs.values()):
                raise FerError(f"{where}: a face without \"probs\" (emotion -> probability): "
                               f"{_excerpt(json.dumps(face))}")
            track = face.get("track")
            if track is not None and (not isinstance(track, int) or isinstance(track, bool)):
                raise FerError(f"{where}: \"track\" must be a whole number or null, not {_excerpt(json.dumps(track))}")
        self.source_times.setdefault(source, array("d")).append(float(time))
        self.records += 1
        for face in faces:
            self._add_face(source, float(time), face)

    def _add_face(self, source: int, time: float, face: dict) -> None:
        for name in face["probs"]:
            if name not in self.columns:
                self._add_column(str(name))
        row = [0.0] * len(self.columns)
        for name, p in face["probs"].items():
            row[self.columns[name]] = p
        key = (source, face.get("track"))
        if key not in self.tracks:
            self.tracks[key] = (array("d"), array("i"), array("f"))
        times, labels, probs = self.tracks[key]
        times.append(time)
        label = face.get("label")
        labels.append(self.columns.get(label, -1) if isinstance(label, str) else -1)  # -1: no label given, the most probable is taken
        probs.extend(row)
        self.faces += 1

    def _add_column(self, name: str) -> None:
        """A label not seen before (another model's, or a file of several runs): widen every stored row."""
        width = len(self.columns)
        self.columns[name] = width
        for key, (times, labels, probs) in self.tracks.items():
            wider = np.zeros((len(times), width + 1), np.float32)
            wider[:, :width] = np.frombuffer(probs, np.float32).reshape(len(times), width)
            self.tracks[key] = (times, labels, array("f", wider.ravel().tolist()))

    def run(self) -> Run:
        order = [n for n in LABELS if n in self.columns] + [n for n in self.columns if n not in LABELS]
        columns = np.array([self.columns[n] for n in order], np.int64)
        position = np.empty(len(order), np.int64)
        position[columns] = np.arange(len(order))  # stored column -> column in label order
        sources, intervals, dwell = {}, {}, {}
        for source in sorted(self.source_times):
            times = np.sort(np.frombuffer(self.source_times[source], np.float64), kind="stable")
            steps = np.diff(times)
            steps = steps[steps > 0]
            interval = float(np.median(steps)) if len(steps) else 0.0
            weights = np.append(np.diff(times), interval)
            weights[weights > max(LONG_GAP, 5 * interval)] = interval
            sources[source], intervals[source], dwell[source] = times, interval, weights
        tracks = {}
        for (source, track), (times, labels, probs) in self.tracks.items():
            t = np.frombuffer(times, np.float64)
            sort = np.argsort(t, kind="stable")
            p = np.frombuffer(probs, np.float32).reshape(len(t), len(order))[:, columns][sort].astype(np.float64)
            stored = np.frombuffer(labels, np.int32)[sort]
            label = np.where(stored >= 0, position[np.maximum(stored, 0)], p.argmax(axis=1) if len(p) else 0)
            at = np.searchsorted(sources[source], t[sort], side="right") - 1
            tracks[(source, track)] = Faces(t[sort], dwell[source][at], label.astype(np.int64), p)
        return Run(self.path, self.records, tuple(order), sources, intervals, tracks, self.faces, self.warnings)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _reason(exc: ValueError) -> str:
    return getattr(exc, "msg", None) or str(exc).split(":")[0]


# ---- summarizing --------------------------------------------------------------------------------------
def summarize(run: Run) -> List[TrackSummary]:
    """One row per (source, track), ordered by source and first appearance; a source's untracked faces
    (images: tracks are null) make one row after its tracks."""
    rows = []
    for (source, track), faces in run.tracks.items():
        # Untracked faces (independent images) count one each: their times mean little.
        weights = faces.weights if track is not None and faces.weights.sum() > 0 else np.ones(len(faces))
        totals = np.bincount(faces.labels, weights, minlength=len(run.labels))
        shares = {name: float(v) for name, v in zip(run.labels, totals / totals.sum())}
        dominant = run.labels[int(np.argmax(totals))]  # ties: the first in label order
        first, last = float(faces.times[0]), float(faces.times[-1])
        duration = last - first + run.intervals[source]
        rows.append(TrackSummary(source, track, first, last, duration, len(faces), dominant, shares, faces))
    rows.sort(key=lambda r: (r.source, r.track is None, r.first, r.track if r.track is not None else 0))
    return rows


def chosen_for_plot(tracks: Sequence[TrackSummary], max_panels: int) -> List[TrackSummary]:
    """The longest ``max_panels`` tracks (untracked rows are table-only), in table order."""
    tracked = [t for t in tracks if t.track is not None]
    longest = sorted(tracked, key=lambda t: (-t.duration, -t.frames, t.source, t.first))[:max_panels]
    keep = {id(t) for t in longest}
    return [t for t in tracked if id(t) in keep]


def describe(run: Run, tracks: Sequence[TrackSummary]) -> str:
    """One sentence on what the run holds."""
    n_sources = len(run.sources)
    tracked = sum(1 for t in tracks if t.track is not None)
    untracked = sum(t.frames for t in tracks if t.track is None)
    span = f" ({run.start:.1f}–{run.end:.1f} s)" if run.end > run.start else ""
    what = [f"{run.records:,} frame{'s' * (run.records != 1)}"]
    if n_sources > 1:
        what.append(f"from {n_sources} sources")
    text = f"{' '.join(what)}{span}"
    faces = f"{run.faces:,} face{'s' * (run.faces != 1)}"
    tracks_text = f"{tracked} track{'s' * (tracked != 1)}"
    if not run.faces:
        return f"{text}: no faces were found"
    if not untracked:
        return f"{text}: {faces} in {tracks_text}"
    if not tracked:
        return f"{text}: {faces}, untracked (independent images)"
    return f"{text}: {faces}, in {tracks_text} and {untracked:,} untracked"


# ---- tables -------------------------------------------------------------------------------------------
def write_csv(run: Run, tracks: Sequence[TrackSummary], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source", "track", "first_s", "last_s", "duration_s", "frames", "dominant",
                         *[f"share_{name}" for name in run.labels]])
        for t in tracks:
            timing = ["", "", ""] if t.track is None else [f"{t.first:.3f}", f"{t.last:.3f}", f"{t.duration:.3f}"]
            writer.writerow([t.source, "" if t.track is None else t.track, *timing, t.frames, t.dominant,
                             *[f"{t.shares[name]:.4f}" for name in run.labels]])


def markdown(run: Run, tracks: Sequence[TrackSummary], png_name: Optional[str] = None) -> str:
    lines = [f"# Emotions in {run.path.name}", "", f"{describe(run, tracks)}.", ""]
    lines += [f"> warning: {w}" for w in run.warnings] + ([""] if run.warnings else [])
    if png_name and any(t.track is not None for t in tracks):
        lines += [f"![emotions over time per track]({png_name})", ""]
    if not tracks:
        lines += ["No faces were found, so there is nothing to tabulate.", ""]
        return "\n".join(lines)
    lines += markdown_table(run, tracks) + [""]
    lines.append("Shares are of each track's time on screen; a frame counts until its source's next frame. "
                 "Untracked faces (independent images) count one each.")
    return "\n".join(lines) + "\n"


def markdown_table(run: Run, tracks: Sequence[TrackSummary]) -> List[str]:
    head = ["source", "track", "first (s)", "last (s)", "duration (s)", "frames", "dominant",
            *[f"{name} %" for name in run.labels]]
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join([" ---: "] * 6 + [" --- "] + [" ---: "] * len(run.labels)) + "|"]
    for t in tracks:
        timing = ["", "", ""] if t.track is None else [f"{t.first:.2f}", f"{t.last:.2f}", f"{t.duration:.2f}"]
        cells = [str(t.source), str(t.track) if t.track is not None else "untracked", *timing, str(t.frames),
                 f"**{t.dominant}**", *[_percent(t.shares[name]) for name in run.labels]]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def _percent(share: float) -> str:
    if share == 0:
        return "0"
    if share < 0.005:
        return "<1"
    return f"{share * 100:.0f}"


# ---- the picture --------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def render_png(run: Run, tracks: Sequence[TrackSummary], max_panels: int = 12, dpi: int = 100) -> bytes:
    """The emotions over time, one panel per track (the ``max_panels`` longest), as PNG bytes."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    shown = chosen_for_plot(tracks, max_panels)
    tracked = [t for t in tracks if t.track is not None]
    untracked = [t for t in tracks if t.track is None]
    notes = []
    if len(shown) < len(tracked):
        ids = {id(t) for t in shown}
        left = [t for t in tracked if id(t) not in ids]
        notes.append(f"The {len(shown)} longest of {len(tracked)} tracks are shown; the other {len(left)} "
                     f"(each {max(t.duration for t in left):.1f} s or shorter) are in the table only.")
    if untracked:
        n = sum(t.frames for t in untracked)
        notes.append(f"{n} untracked face{'s' * (n != 1)} (independent images, no time line) "
                     f"{'are' if n != 1 else 'is'} in the table only.")

    if shown:
        notes.insert(0, "Stacked: each emotion's probability. Light grey within a track: frames where its face "
                     "was not detected.")
    header, per_panel, footer = 1.05, 1.75, 0.35 + 0.22 * len(notes)
    n_panels = max(len(shown), 1)
    fig = plt.figure(figsize=(11, header + per_panel * n_panels + footer), dpi=dpi)
    height = fig.get_figheight()
    fig.suptitle(f"Emotions over time: {run.path.name}", x=0.015, y=1 - 0.12 / height, ha="left", va="top",
                 fontsize=14, fontweight="bold")
    fig.text(0.015, 1 - 0.45 / height, describe(run, tracks), ha="left", va="top", fontsize=10, color="#333333")
    handles = [Patch(facecolor=color(name, run.labels), edgecolor="none", label=name) for name in run.labels]
    if shown:
        fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(0.99, 1 - 0.08 / height), ncol=min(len(handles), 7),
                   frameon=False, fontsize=10, handlelength=1.4, columnspacing=1.0)
    top, bottom = 1 - header / height, footer / height
    if not shown:
        message = ("No faces were found in this run." if not run.faces else
                   "No tracked faces: the faces are from independent images; see the table.")
        fig.text(0.5, (top + bottom) / 2, message, ha="center", va="center", fontsize=13, color="#555555")
    else:
        grid = fig.add_gridspec(len(shown), 1, left=0.06, right=0.985, top=top, bottom=bottom + 0.45 / height,
                                hspace=0.75)
        colors = [color(name, run.labels) for name in run.labels]
        for i, t in enumerate(shown):
            ax = fig.add_subplot(grid[i, 0])
            x, y = _steps(t.faces, run.intervals[t.source])
            ax.stackplot(x, y, colors=colors, linewidth=0)
            times = run.sources[t.source]
            ax.set_xlim(float(times[0]), float(times[-1]) + run.intervals[t.source])
            ax.set_ylim(0, 1)
            ax.set_yticks([0, 0.5, 1])
            ax.set_yticklabels(["0", "50%", "100%"], fontsize=8)
            ax.tick_params(axis="x", labelsize=8)
            ax.margins(x=0)
            for side in ("top", "right"):
                ax.spines[side].set_visible(False)
            where = f"source {t.source} · " if len(run.sources) > 1 else ""
            # The track's span in light grey: white inside it is where the face was not detected.
            ax.axvspan(t.first, t.last + run.intervals[t.source], color=UNSEEN, linewidth=0, zorder=0)
            ax.set_title(f"{where}track {t.track}: {t.first:.1f}–{t.last + run.intervals[t.source]:.1f} s "
                         f"({seconds(t.duration)}, {t.frames:,} frame{'s' * (t.frames != 1)}) · mostly {t.dominant} "
                         f"({t.shares[t.dominant] * 100:.0f}% of the time)", loc="left", fontsize=10)
            if i == len(shown) - 1:
                ax.set_xlabel("time (s)", fontsize=9)
    if notes:
        fig.text(0.015, 0.12 / height, "\n".join(notes), ha="left", va="bottom", fontsize=9, color="#555555")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 1 else f"{value:.1f} s"


def _steps(faces: Faces, interval: float, most: int = 3000) -> Tuple[np.ndarray, np.ndarray]:
    """Each face's probabilities held from its time until its source's next frame (a step plot), with NaN
    across the gaps where the track was not seen, so the areas break there instead of bridging them.
    Over ``most`` faces, averaged into ``most // 2`` equal stretches of time (finer than the pixels)."""
    t = faces.times
    end = t + np.where(faces.weights > 0, faces.weights, interval or 0.04)
    if len(t) > most:
        bins = most // 2
        edges = np.linspace(t[0], end[-1], bins + 1)
        at = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, bins - 1)
        total = np.bincount(at, faces.weights, bins)
        sums = np.zeros((bins, faces.probs.shape[1]))
        np.add.at(sums, at, faces.probs * faces.weights[:, None])
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(total[:, None] > 0, sums / total[:, None], np.nan)
        return np.column_stack([edges[:-1], edges[1:]]).ravel(), np.repeat(values, 2, axis=0).T
    x = np.column_stack([t, end]).ravel()
    y = np.repeat(faces.probs, 2, axis=0)
    gaps = np.nonzero(t[1:] > end[:-1] + 1e-6)[0] + 1  # faces seen again after a gap
    x = np.insert(x, np.repeat(2 * gaps, 2), np.column_stack([end[gaps - 1], t[gaps]]).ravel())
    y = np.insert(y, np.repeat(2 * gaps, 2), np.nan, axis=0)
    return x, y.T


# ---- the page -----------------------------------------------------------------------------------------
def html_page(run: Run, tracks: Sequence[TrackSummary], png: Optional[bytes]) -> str:
    """One page that opens offline: the PNG inline as base64, the table, inline CSS; nothing fetched."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Emotions in {e(run.path.name)} · fer-report</title>", f"<style>{_CSS}</style>", "</head>", "<body>",
        f"<h1>Emotions in <code>{e(run.path.name)}</code></h1>",
        f'<p class="meta">{e(describe(run, tracks))}.<br>From <code>{e(str(run.path))}</code>; made by fer-report on '
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}.</p>",
    ]
    for warning in run.warnings:
        parts.append(f'<p class="warning">warning: {e(warning)}</p>')
    if png is not None and any(t.track is not None for t in tracks):  # otherwise the picture only says "none"
        parts.append(f'<img class="plot" alt="Stacked emotion probabilities over time, one panel per track" '
                     f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">')
    parts.append("<h2>Tracks</h2>")
    if not tracks:
        parts.append('<p class="empty">No faces were found in this run, so there is nothing to tabulate.</p>')
    else:
        parts.append(_html_table(run, tracks))
        parts.append('<p class="note">Shares are of each track\'s time on screen (a frame counts until its '
                     "source's next frame); untracked faces (independent images) count one each. "
                     "The bar shows the shares in order.</p>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _html_table(run: Run, tracks: Sequence[TrackSummary]) -> str:
    e = html.escape
    several = len(run.sources) > 1  # the source column only where there is a choice
    head = [*(["source"] if several else []), "track", "first (s)", "last (s)", "duration (s)", "frames"]
    top = [f'<th rowspan="2">{e(h)}</th>' for h in head]
    top += ['<th rowspan="2" class="text">dominant</th>', '<th rowspan="2" class="text">mix</th>',
            f'<th colspan="{len(run.labels)}" class="group">share of the track\'s time, %</th>']
    names = [f'<th><span class="chip" style="background:{color(name, run.labels)}"></span>{e(name)}</th>'
             for name in run.labels]
    rows = ['<div class="scroll"><table>', f"<thead><tr>{''.join(top)}</tr><tr>{''.join(names)}</tr></thead>", "<tbody>"]
    for t in tracks:
        timing = ["", "", ""] if t.track is None else [f"{t.first:.2f}", f"{t.last:.2f}", f"{t.duration:.2f}"]
        bar = "".join(f'<span style="width:{t.shares[name] * 100:.2f}%;background:{color(name, run.labels)}" '
                      f'title="{e(name)} {t.shares[name] * 100:.0f}%"></span>'
                      for name in run.labels if t.shares[name] > 0)
        cells = [*([f"<td>{t.source}</td>"] if several else []),
                 f"<td>{t.track if t.track is not None else 'untracked'}</td>",
                 *[f"<td>{v}</td>" for v in timing], f"<td>{t.frames}</td>",
                 f'<td class="dominant"><span class="chip" style="background:{color(t.dominant, run.labels)}"></span>'
                 f"{e(t.dominant)}</td>", f'<td><div class="bar">{bar}</div></td>',
                 *[f'<td class="{"top" if name == t.dominant else ""}">{_percent(t.shares[name])}</td>'
                   for name in run.labels]]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    rows += ["</tbody>", "</table></div>"]
    return "\n".join(rows)


_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222;
       margin: 24px auto; max-width: 1200px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; }
code { font: 0.95em ui-monospace, "DejaVu Sans Mono", monospace; }
.meta { color: #555; margin: 0 0 10px; } .note, .empty { color: #555; font-size: 13px; }
.warning { background: #fff4d6; border-left: 4px solid #e0a800; padding: 6px 10px; }
.chip { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
img.plot { display: block; max-width: 100%; height: auto; border: 1px solid #e4e4e4; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
th, td { padding: 4px 7px; border-bottom: 1px solid #e8e8e8; text-align: right; white-space: nowrap; }
th { background: #f5f5f5; vertical-align: bottom; } th.group { text-align: center; font-weight: 600; color: #555;
                                                      border-bottom: 1px solid #ccc; }
td.dominant, th.text { text-align: left; } td.dominant { font-weight: 600; } td.top { font-weight: 700; }
tbody tr:hover { background: #fafafa; }
.bar { display: flex; width: 120px; height: 12px; border-radius: 2px; overflow: hidden; background: #eee; }
.bar span { display: block; height: 100%; }
"""
