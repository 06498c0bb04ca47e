"""Videos of moving, turning and changing faces with known labels per frame, and the measures that compare a
policy's run of fer-run with the every-frame run on them.

Each person is a FER2013 face that moves across the frame (curved paths, bouncing off the edges and off each
other, now and then leaving through an edge and coming back), turns in plane (within ±25°), grows and
shrinks, and changes expression every 0.7–2 s to a face of another label, by a cut or a short cross-fade.
The truth, per frame, is each visible person's box, label and face; the change events are listed apart.

    python -m fer_engine.benchmarks.moving_faces make --out DIR --data fer2013.csv.gz
    fer-run --video DIR/moving_faces.mp4 --json ref.jsonl --no-render -q
    fer-run --video DIR/moving_faces.mp4 --json cand.jsonl --no-render -q --detect-every 3
    python -m fer_engine.benchmarks.moving_faces compare --truth DIR/truth.json --reference ref.jsonl \\
        --candidate cand.jsonl

Measures (all on truth faces at least ``MIN_SHOWN`` shown: inside the frame and not covered by another face):
recall of a run; label agreement of a candidate run with the reference (every-frame) run; and how long after
an expression change the candidate's label follows to the label the reference settles on.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from fer_engine.spec import LABELS

from .face_video import background

PROG = "python -m fer_engine.benchmarks.moving_faces"
MIN_SHOWN = 0.6  # truth faces less shown than this (off the frame's edge, under another face) are not scored
SETTLE_MS = 300.0  # the reference's label is taken from this long after a change until the next change
MIN_WINDOW_MS = 400.0  # changes followed by another within this long are not scored

Box = Tuple[int, int, int, int]
Records = Sequence[Sequence[dict]]  # per frame, fer-run's "faces": dicts with at least "box" and "label"


# ---- truth -----------------------------------------------------------------------------------------------
@dataclass
class Shown:
    """One person visible in one frame."""
    person: int
    box: Box  # x, y, w, h of the pasted square before rotation, clipped to the frame
    label: int  # index into LABELS (of the face shown, or during a cross-fade of the face past its midpoint)
    face: int  # index into the faces given
    shown: float  # share of the pasted square inside the frame and not covered by a face drawn over it
    angle: float  # in-plane rotation, degrees
    side: int  # side of the pasted square before clipping


@dataclass
class Change:
    person: int
    frame: int  # the first frame with the new label (a cross-fade's midpoint)
    old_label: int
    new_label: int
    old_face: int
    new_face: int
    fade: int  # frames of cross-fade; 0 = a cut


@dataclass
class MovingTruth:
    size: Tuple[int, int]
    fps: float
    frames: List[List[Shown]]
    changes: List[Change]

    def to_dict(self) -> dict:
        return {"size": list(self.size), "fps": self.fps, "labels": list(LABELS),
                "frames": [[asdict(s) for s in frame] for frame in self.frames],
                "changes": [asdict(c) for c in self.changes]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> "MovingTruth":
        frames = [[Shown(**{**s, "box": tuple(s["box"])}) for s in frame] for frame in data["frames"]]
        return cls(tuple(data["size"]), float(data["fps"]), frames, [Change(**c) for c in data["changes"]])


def write_truth(path: str | Path, truth: MovingTruth) -> None:
    Path(path).write_text(truth.to_json())


def read_truth(path: str | Path) -> MovingTruth:
    return MovingTruth.from_dict(json.loads(Path(path).read_text()))


# ---- the video --------------------------------------------------------------------------------------------
@dataclass
class Segment:
    """A face a person shows from ``start`` (its label's first frame) on, faded in over ``fade`` frames."""
    start: int
    face: int
    fade: int

    def fade_frames(self) -> range:
        return range(self.start - _fade_mid(self.fade), self.start - _fade_mid(self.fade) + self.fade)


def _fade_mid(fade: int) -> int:
    """Frame i of a fade shows the new face at weight (i+1)/(fade+1): the label switches at the first i with
    weight ≥ 0.5."""
    return math.ceil((fade + 1) / 2) - 1 if fade else 0


@dataclass
class Person:
    x: float  # centre
    y: float
    vx: float  # pixels per frame
    vy: float
    curve: float  # heading change, radians per frame
    side: Tuple[float, float, float, float]  # low, high, frequency (cycles per frame), phase
    turn: Tuple[float, float, float]  # amplitude (degrees), frequency, phase
    state: str = "inside"  # inside | leaving | away | entering
    away_until: int = 0
    segments: List[Segment] = field(default_factory=list)

    def side_at(self, t: int) -> int:
        low, high, freq, phase = self.side
        return int(round(low + (high - low) * (0.5 + 0.5 * math.sin(2 * math.pi * freq * t + phase))))

    def angle_at(self, t: int) -> float:
        amplitude, freq, phase = self.turn
        return amplitude * math.sin(2 * math.pi * freq * t + phase)


@dataclass
class Motion:
    """How people move; speeds are shares of the frame width per second."""
    speed: Tuple[float, float] = (0.15, 1 / 3)
    curve: float = 0.6  # most heading change, radians per second
    turn: float = 25.0  # most in-plane rotation, degrees
    exit_chance: float = 0.25  # at an edge, the chance of leaving through it instead of bouncing
    away: Tuple[float, float] = (0.3, 1.0)  # seconds off the frame before coming back


@dataclass
class Expressions:
    hold: Tuple[float, float] = (0.7, 2.0)  # seconds a face is held
    fade: Tuple[int, int] = (3, 5)  # frames of a cross-fade
    cut_share: float = 0.5  # share of changes that are cuts


def default_side(size: Tuple[int, int]) -> Tuple[int, int]:
    """70–150 px at 640×480, scaled with the frame."""
    scale = min(size[0] / 640, size[1] / 480)
    return max(8, round(70 * scale)), max(8, round(150 * scale))


def _schedule(labels: np.ndarray, frames: int, fps: float, rng: np.random.Generator,
              expressions: Expressions) -> List[Segment]:
    by_label = {int(k): np.flatnonzero(labels == k) for k in np.unique(labels)}
    if len(by_label) < 2:
        raise ValueError("the faces need at least two labels for expressions to change")
    face = int(rng.integers(len(labels)))
    segments = [Segment(0, face, 0)]
    t = 0
    while True:
        t += max(1, round(rng.uniform(*expressions.hold) * fps))
        if t >= frames:
            return segments
        others = [k for k in by_label if k != int(labels[face])]
        face = int(rng.choice(by_label[int(rng.choice(others))]))
        low, high = expressions.fade
        fade = 0 if rng.random() < expressions.cut_share else int(rng.integers(low, high + 1))
        segments.append(Segment(t, face, fade))


def _place(people: int, size: Tuple[int, int], side: Tuple[int, int], fps: float,
           rng: np.random.Generator, motion: Motion) -> List[Person]:
    width, height = size
    placed: List[Person] = []
    for _ in range(people):
        low = rng.uniform(side[0], (side[0] + side[1]) / 2)
        high = rng.uniform((side[0] + side[1]) / 2, side[1])
        margin = high / 2
        for _attempt in range(50):  # centres apart, where the frame has room
            x, y = rng.uniform(margin, max(margin, width - margin)), rng.uniform(margin, max(margin, height - margin))
            if all(math.hypot(x - p.x, y - p.y) > (high + p.side[1]) / 2 for p in placed):
                break
        speed = rng.uniform(*motion.speed) * width / fps
        heading = rng.uniform(0, 2 * math.pi)
        placed.append(Person(
            x, y, speed * math.cos(heading), speed * math.sin(heading),
            curve=rng.uniform(-motion.curve, motion.curve) / fps,
            side=(low, high, rng.uniform(0.05, 0.2) / fps, rng.uniform(0, 2 * math.pi)),
            turn=(rng.uniform(0.5, 1.0) * motion.turn, rng.uniform(0.1, 0.35) / fps, rng.uniform(0, 2 * math.pi))))
    return placed


def _walls(p: Person, t: int, size: Tuple[int, int], fps: float, rng: np.random.Generator, motion: Motion) -> None:
    """Bounces off an edge the person reaches, or (now and then) lets them leave through it."""
    half = p.side_at(t) / 2
    for axis, extent in (("x", size[0]), ("y", size[1])):
        position, velocity = getattr(p, axis), getattr(p, "v" + axis)
        out = (position - half < 0 and velocity < 0) or (position + half > extent and velocity > 0)
        if not out or p.state != "inside":
            continue
        if rng.random() < motion.exit_chance:
            p.state, p.curve = "leaving", 0.0
        else:
            setattr(p, "v" + axis, -velocity)
            p.curve = rng.uniform(-motion.curve, motion.curve) / fps


def _enter(p: Person, t: int, size: Tuple[int, int], fps: float, rng: np.random.Generator, motion: Motion) -> None:
    """Puts an away person just outside a random edge, heading in."""
    width, height = size
    half = p.side_at(t) / 2
    speed = rng.uniform(*motion.speed) * width / fps
    edge = int(rng.integers(4))
    normal = [(1, 0), (-1, 0), (0, 1), (0, -1)][edge]
    heading = math.atan2(normal[1], normal[0]) + rng.uniform(-math.pi / 4, math.pi / 4)
    along_x, along_y = rng.uniform(half, max(half, width - half)), rng.uniform(half, max(half, height - half))
    p.x = {0: -half, 1: width + half}.get(edge, along_x)
    p.y = {2: -half, 3: height + half}.get(edge, along_y)
    p.vx, p.vy = speed * math.cos(heading), speed * math.sin(heading)
    p.state = "entering"


def _collide(people: List[Person], t: int, speed_range: Tuple[float, float]) -> None:
    """Equal masses bounce: approaching people swap the velocity components along the line between them.
    Speeds are then kept within ``speed_range`` (pixels per frame), so nobody stops."""
    present = [p for p in people if p.state != "away"]
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            dx, dy = b.x - a.x, b.y - a.y
            distance = math.hypot(dx, dy) or 1e-6
            closing = (b.vx - a.vx) * dx + (b.vy - a.vy) * dy
            if distance > 1.05 * (a.side_at(t) + b.side_at(t)) / 2 or closing >= 0:
                continue
            nx, ny = dx / distance, dy / distance
            va, vb = a.vx * nx + a.vy * ny, b.vx * nx + b.vy * ny
            a.vx, a.vy = a.vx + (vb - va) * nx, a.vy + (vb - va) * ny
            b.vx, b.vy = b.vx + (va - vb) * nx, b.vy + (va - vb) * ny
    for p in present:
        speed = math.hypot(p.vx, p.vy) or 1e-6
        scale = min(max(speed, speed_range[0]), speed_range[1]) / speed
        p.vx, p.vy = p.vx * scale, p.vy * scale


def _step(people: List[Person], t: int, size: Tuple[int, int], fps: float, rng: np.random.Generator,
          motion: Motion) -> None:
    """Moves everyone from frame t to frame t+1."""
    width, height = size
    for p in people:
        if p.state == "away":
            if t + 1 >= p.away_until:
                _enter(p, t + 1, size, fps, rng, motion)
            continue
        cos, sin = math.cos(p.curve), math.sin(p.curve)
        p.vx, p.vy = p.vx * cos - p.vy * sin, p.vx * sin + p.vy * cos
        p.x, p.y = p.x + p.vx, p.y + p.vy
        half = p.side_at(t + 1) / 2
        inside = half <= p.x <= width - half and half <= p.y <= height - half
        outside = p.x + half < 0 or p.x - half > width or p.y + half < 0 or p.y - half > height
        if p.state == "entering" and inside:
            p.state, p.curve = "inside", rng.uniform(-motion.curve, motion.curve) / fps
        elif p.state != "inside" and outside:  # left, or slid off along an edge while coming in
            p.state, p.away_until = "away", t + 1 + max(1, round(rng.uniform(*motion.away) * fps))
        _walls(p, t + 1, size, fps, rng, motion)
    _collide(people, t + 1, tuple(s * width / fps for s in motion.speed))


def _face_at(p: Person, t: int, faces: np.ndarray) -> Tuple[np.ndarray, int]:
    """The 48×48 image a person shows at frame t (blended during a fade), and the face its label comes from."""
    current = max(i for i, s in enumerate(p.segments) if s.start <= t)
    image = faces[p.segments[current].face].astype(np.float32)
    for i in (current, current + 1):  # a fade straddles its segment's start
        if 0 < i < len(p.segments) and t in p.segments[i].fade_frames():
            seg = p.segments[i]
            weight = (t - seg.fade_frames().start + 1) / (seg.fade + 1)
            image = (1 - weight) * faces[p.segments[i - 1].face] + weight * faces[seg.face]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), p.segments[current].face


def _paste(frame: np.ndarray, owner: np.ndarray, index: int, image: np.ndarray, centre: Tuple[float, float],
           side: int, angle: float) -> Tuple[int, int, int, int]:
    """Pastes the face rotated by ``angle`` in a side×side square centred at ``centre``; returns the square's
    corners clipped to the frame (x0, y0, x1, y1), and marks them in ``owner``."""
    height, width = frame.shape[:2]
    x, y = int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2))
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side, width), min(y + side, height)
    if x1 <= x0 or y1 <= y0:
        return x0, y0, x0, y0
    tile = cv2.resize(image, (side, side), interpolation=cv2.INTER_CUBIC)
    matrix = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    mask = cv2.warpAffine(np.full_like(tile, 255), matrix, (side, side)) > 127
    tile = cv2.warpAffine(tile, matrix, (side, side))
    window = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
    region = frame[y0:y1, x0:x1]
    region[mask[window]] = tile[window][mask[window]][:, None]
    owner[y0:y1, x0:x1] = index
    return x0, y0, x1, y1


def _render(people: List[Person], t: int, base: np.ndarray, faces: np.ndarray,
            labels: np.ndarray) -> Tuple[np.ndarray, List[Shown]]:
    frame = base.copy()
    owner = np.full(frame.shape[:2], -1, np.int16)  # who is drawn on top, to measure how much each is shown
    drawn = []
    for index, p in enumerate(people):
        if p.state == "away":
            continue
        image, face = _face_at(p, t, faces)
        side, angle = p.side_at(t), p.angle_at(t)
        corners = _paste(frame, owner, index, image, (p.x, p.y), side, angle)
        drawn.append((index, face, side, angle, corners))
    counts = np.bincount(owner.ravel() + 1, minlength=len(people) + 1)
    shown = []
    for index, face, side, angle, (x0, y0, x1, y1) in drawn:
        if x1 > x0 and y1 > y0:
            shown.append(Shown(index, (x0, y0, x1 - x0, y1 - y0), int(labels[face]), face,
                               round(float(counts[index + 1]) / side ** 2, 3), round(angle, 2), side))
    return frame, shown


def _changes(people: List[Person], labels: np.ndarray) -> List[Change]:
    events = []
    for index, p in enumerate(people):
        for old, new in zip(p.segments, p.segments[1:]):
            events.append(Change(index, new.start, int(labels[old.face]), int(labels[new.face]), old.face,
                                 new.face, new.fade))
    return sorted(events, key=lambda c: (c.frame, c.person))


def make_moving_face_video(path: str | Path, faces: np.ndarray, labels: np.ndarray, *,
                           size: Tuple[int, int] = (640, 480), frames: int = 300, fps: float = 30.0,
                           people: int = 5, seed: int = 0, side: Optional[Tuple[int, int]] = None,
                           motion: Optional[Motion] = None, expressions: Optional[Expressions] = None,
                           truth_path: str | Path | None = None) -> MovingTruth:
    """Writes the video (mp4v) and returns its truth. ``faces`` are gray 48×48 images, ``labels`` their
    indices into LABELS; ``side`` the range of a face's side in pixels (default: 70–150 at 640×480, scaled)."""
    labels = np.asarray(labels)
    motion, expressions = motion or Motion(), expressions or Expressions()
    rng = np.random.default_rng(seed)
    side = side or default_side(size)
    base = background(size, rng)
    crowd = _place(people, size, side, fps, rng, motion)
    for p in crowd:
        p.segments = _schedule(labels, frames, fps, rng, expressions)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not writer.isOpened():
        raise OSError(f"cannot write {path}")
    per_frame: List[List[Shown]] = []
    try:
        for t in range(frames):
            frame, shown = _render(crowd, t, base, faces, labels)
            writer.write(frame)
            per_frame.append(shown)
            _step(crowd, t, size, fps, rng, motion)
    finally:
        writer.release()
    truth = MovingTruth(tuple(size), float(fps), per_frame, _changes(crowd, labels))
    if truth_path is not None:
        write_truth(truth_path, truth)
    return truth


PRESETS = {
    "five-faces": {"size": (640, 480), "people": 5, "side": None},
    "one-face-720p": {"size": (1280, 720), "people": 1, "side": (200, 400)},
}


def make_one_face_video(path: str | Path, faces: np.ndarray, labels: np.ndarray, **options) -> MovingTruth:
    """One large face (side 200–400 px) moving about a 1280×720 frame."""
    return make_moving_face_video(path, faces, labels, **{**PRESETS["one-face-720p"], **options})


VIDEOS = (("five faces 640x480", make_moving_face_video), ("one face 1280x720", make_one_face_video))


# ---- measures ---------------------------------------------------------------------------------------------
def read_jsonl_faces(path: str | Path) -> List[List[dict]]:
    """fer-run's JSON Lines as per-frame face lists, in frame order; frames missing from the file (dropped
    by --realtime) are empty, so that index i is frame i."""
    by_frame: Dict[int, List[dict]] = {}
    sources = set()
    for line in Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            sources.add(record.get("source", 0))
            by_frame[int(record["frame"])] = record["faces"]
    if len(sources) > 1:
        raise ValueError(f"{path}: {len(sources)} sources; these measures take one")
    if not by_frame:
        return []
    return [by_frame.get(i, []) for i in range(max(by_frame) + 1)]


def _options(shown: Sequence[Shown], detections: Sequence[dict]) -> Dict[int, List[int]]:
    """Person → the detections whose box centre lies in the person's box, nearest centre first; people with
    the nearest detections first."""
    options = []
    for s in shown:
        x, y, w, h = s.box
        near = []
        for d, face in enumerate(detections):
            bx, by, bw, bh = face["box"]
            cx, cy = bx + bw / 2, by + bh / 2
            if x <= cx <= x + w and y <= cy <= y + h:
                near.append((math.hypot(cx - x - w / 2, cy - y - h / 2), d))
        if near:
            options.append((min(near)[0], s.person, [d for _, d in sorted(near)]))
    return {person: ds for _, person, ds in sorted(options)}


def _match(options: Dict[int, List[int]]) -> Dict[int, int]:
    """The most person → detection pairs, each detection used once (Kuhn's augmenting paths): where boxes
    overlap, a detection inside two of them must not leave the other person's own detection unmatched."""
    owner: Dict[int, int] = {}  # detection → person

    def place(person: int, seen: set) -> bool:
        for d in options[person]:
            if d not in seen:
                seen.add(d)
                if d not in owner or place(owner[d], seen):
                    owner[d] = person
                    return True
        return False

    for person in options:
        place(person, set())
    return {person: d for d, person in owner.items()}


def assign(truth: MovingTruth, records: Records) -> List[Dict[int, dict]]:
    """Per frame, person → the detection matched to them: a detection whose box centre lies in the person's
    box, each detection to one person and each person to one detection."""
    matched = []
    for t, shown in enumerate(truth.frames):
        detections = records[t] if t < len(records) else []
        pairs = _match(_options(shown, detections))
        matched.append({person: detections[d] for person, d in pairs.items()})
    return matched


def _scored(truth: MovingTruth, min_shown: float) -> List[List[int]]:
    """Per frame, the people shown enough to be scored."""
    return [[s.person for s in frame if s.shown >= min_shown] for frame in truth.frames]


@dataclass
class Recall:
    share: Optional[float]
    found: int
    faces: int


def recall_counts(truth: MovingTruth, records: Records, min_shown: float = MIN_SHOWN) -> Recall:
    matched = assign(truth, records)
    faces = found = 0
    for people, frame in zip(_scored(truth, min_shown), matched):
        faces += len(people)
        found += sum(person in frame for person in people)
    return Recall(found / faces if faces else None, found, faces)


def recall(truth: MovingTruth, records: Records, min_shown: float = MIN_SHOWN) -> Optional[float]:
    """The share of truth faces (shown at least ``min_shown``) matched by a detection."""
    return recall_counts(truth, records, min_shown).share


def truth_accuracy(truth: MovingTruth, records: Records, min_shown: float = MIN_SHOWN) -> Optional[float]:
    """Over truth faces matched by a detection, the share labelled with the face's FER2013 label."""
    right = found = 0
    for labels, shown in zip(_labels_by_person(truth, records, min_shown), truth.frames):
        truth_labels = {s.person: LABELS[s.label] for s in shown}
        found += len(labels)
        right += sum(label == truth_labels[person] for person, label in labels.items())
    return right / found if found else None


@dataclass
class Agreement:
    share: Optional[float]  # None when nothing was compared
    compared: int


def _labels_by_person(truth: MovingTruth, records: Records, min_shown: float) -> List[Dict[int, str]]:
    matched = assign(truth, records)
    return [{p: frame[p]["label"] for p in people if p in frame}
            for people, frame in zip(_scored(truth, min_shown), matched)]


def agreement(truth: MovingTruth, reference: Records, candidate: Records, min_shown: float = MIN_SHOWN) -> Agreement:
    """Over truth faces matched in both runs, the share where the candidate's label is the reference's."""
    same = compared = 0
    runs = (_labels_by_person(truth, run, min_shown) for run in (reference, candidate))
    for ref, cand in zip(*runs):
        for person in ref.keys() & cand.keys():
            compared += 1
            same += ref[person] == cand[person]
    return Agreement(same / compared if compared else None, compared)


@dataclass
class Stats:
    count: int
    median: Optional[float]
    p90: Optional[float]
    max: Optional[float]

    @classmethod
    def of(cls, values: Sequence[float]) -> "Stats":
        if not values:
            return cls(0, None, None, None)
        array = np.asarray(values, float)
        return cls(len(values), round(float(np.median(array)), 1), round(float(np.percentile(array, 90)), 1),
                   round(float(array.max()), 1))


@dataclass
class EventDelay:
    change: Change
    settled: str  # the reference's label for the new face
    reference_ms: Optional[float]  # None: never followed before the next change
    candidate_ms: Optional[float]


@dataclass
class FollowDelays:
    events: int  # change events in the truth
    evaluated: int
    skipped_short: int  # the next change (or the end) came within MIN_WINDOW_MS
    skipped_unmatched: int  # the person was matched in both runs on under half the frames until the next change
    never_followed: int  # evaluated events the candidate never followed before the next change
    reference_ms: Stats  # the reference's own lag (its smoothing)
    candidate_ms: Stats
    added_ms: Stats  # candidate minus reference, on events both followed
    delays: List[EventDelay] = field(default_factory=list)

    def to_dict(self) -> dict:
        record = asdict(self)
        del record["delays"]
        return record


def _windows(truth: MovingTruth) -> List[Tuple[Change, int]]:
    """Each change with the frame of the person's next change (or the end of the video)."""
    ends = []
    for change in truth.changes:
        later = [c.frame for c in truth.changes if c.person == change.person and c.frame > change.frame]
        ends.append((change, min(later, default=len(truth.frames))))
    return ends


def _first_follow(labels: List[Dict[int, str]], person: int, start: int, end: int, target: str) -> Optional[int]:
    return next((t - start for t in range(start, end) if labels[t].get(person) == target), None)


def follow_delays(truth: MovingTruth, reference: Records, candidate: Records, fps: Optional[float] = None,
                  min_shown: float = MIN_SHOWN) -> FollowDelays:
    """For each change, how long until each run's label for that person is the label the reference settles on
    (its most frequent label from the change + SETTLE_MS until the next change)."""
    fps = fps or truth.fps
    ref, cand = _labels_by_person(truth, reference, min_shown), _labels_by_person(truth, candidate, min_shown)
    ms = 1000.0 / fps
    delays: List[EventDelay] = []
    short = unmatched = 0
    for change, end in _windows(truth):
        person, start = change.person, change.frame
        if (end - start) * ms < MIN_WINDOW_MS:
            short += 1
            continue
        both = sum(person in ref[t] and person in cand[t] for t in range(start, end))
        settle = [ref[t][person] for t in range(start + math.ceil(SETTLE_MS / ms), end) if person in ref[t]]
        if both < (end - start) / 2 or not settle:
            unmatched += 1
            continue
        settled = Counter(settle).most_common(1)[0][0]
        r, c = (_first_follow(labels, person, start, end, settled) for labels in (ref, cand))
        delays.append(EventDelay(change, settled, None if r is None else r * ms, None if c is None else c * ms))
    followed = [d for d in delays if d.candidate_ms is not None]
    return FollowDelays(
        events=len(truth.changes), evaluated=len(delays), skipped_short=short, skipped_unmatched=unmatched,
        never_followed=len(delays) - len(followed),
        reference_ms=Stats.of([d.reference_ms for d in delays if d.reference_ms is not None]),
        candidate_ms=Stats.of([d.candidate_ms for d in followed]),
        added_ms=Stats.of([d.candidate_ms - d.reference_ms for d in followed if d.reference_ms is not None]),
        delays=delays)


def compare(truth: MovingTruth, reference: Records, candidate: Records, fps: Optional[float] = None,
            min_shown: float = MIN_SHOWN) -> dict:
    """Recall of both runs, the candidate's label agreement with the reference, and its follow delays."""
    ref, cand = recall_counts(truth, reference, min_shown), recall_counts(truth, candidate, min_shown)
    agree = agreement(truth, reference, candidate, min_shown)
    points = None if ref.share is None or cand.share is None else round(100 * (cand.share - ref.share), 2)
    return {
        "frames": len(truth.frames),
        "fps": fps or truth.fps,
        "recall": {"reference": ref.share, "candidate": cand.share, "difference_points": points,
                   "faces": ref.faces},
        "agreement": asdict(agree),
        "follow": follow_delays(truth, reference, candidate, fps, min_shown).to_dict(),
    }


# ---- command line -----------------------------------------------------------------------------------------
def _size(text: str) -> Tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not WIDTHxHEIGHT, e.g. 640x480") from None
    if width < 64 or height < 64:
        raise argparse.ArgumentTypeError(f"{text} is too small; it must be at least 64x64")
    return width, height


def build_parser() -> argparse.ArgumentParser:
    from fer_engine.cli import positive_float, positive_int

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make", help="write a video and its truth (truth.json)")
    make.add_argument("--out", required=True, help="folder for moving_faces.mp4 and truth.json")
    make.add_argument("--data", help="FER2013 csv(.gz): paste PublicTest faces (default: drawn faces)")
    make.add_argument("--preset", choices=sorted(PRESETS), default="five-faces",
                      help="five-faces: 5 at 640x480; one-face-720p: 1 large face at 1280x720")
    make.add_argument("--size", type=_size, help="WIDTHxHEIGHT (default: the preset's)")
    make.add_argument("--people", type=positive_int, help="faces at once (default: the preset's)")
    make.add_argument("--frames", type=positive_int, default=300)
    make.add_argument("--fps", type=positive_float, default=30.0)
    make.add_argument("--seed", type=int, default=0)
    cmp = commands.add_parser("compare", help="measure a candidate run against the reference (every-frame) run")
    cmp.add_argument("--truth", required=True)
    cmp.add_argument("--reference", required=True, help="fer-run --json of the every-frame run")
    cmp.add_argument("--candidate", required=True, help="fer-run --json of the run to measure")
    cmp.add_argument("--fps", type=positive_float, help="default: the truth's")
    return parser


def _faces(data: Optional[str]) -> Tuple[np.ndarray, np.ndarray]:
    if not data:
        from .face_video import drawn_faces

        return drawn_faces(64), np.arange(64) % len(LABELS)
    from fer_engine.train.data import load_fer2013

    split = load_fer2013(data).split("PublicTest")  # never PrivateTest: it is the held-out test set
    return split.images, split.labels


def _make(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    preset = PRESETS[args.preset]
    faces, labels = _faces(args.data)
    truth = make_moving_face_video(out / "moving_faces.mp4", faces, labels, size=args.size or preset["size"],
                                   frames=args.frames, fps=args.fps, people=args.people or preset["people"],
                                   seed=args.seed, side=preset["side"], truth_path=out / "truth.json")
    print(f"{out / 'moving_faces.mp4'}: {len(truth.frames)} frames, {len(truth.changes)} expression changes; "
          f"truth in {out / 'truth.json'}")
    return 0


def _compare(args) -> int:
    truth = read_truth(args.truth)
    result = compare(truth, read_jsonl_faces(args.reference), read_jsonl_faces(args.candidate), args.fps)
    print(json.dumps(result, indent=2))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    from fer_engine.cli import run_cli

    args = build_parser().parse_args(argv)
    return run_cli(lambda: _make(args) if args.command == "make" else _compare(args), PROG)


if __name__ == "__main__":
    raise SystemExit(main())
