"""Dynamic evaluation: task-family scorers, judge verdicts, calibration, the AUROC gate,
the contamination study, adapters of published formats, resume."""

from __future__ import annotations

import io
import itertools
import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import run_cli
from PIL import Image as PILImage

from mmsim.actors import ActorSystem
from mmsim.actors.roles import JudgeActor, JudgeRequest
from mmsim.backends.base import Backend, Completion, GenerateRequest
from mmsim.data.sample import Sample
from mmsim.errors import DataError
from mmsim.messages import AnswerFormat, Usage, Verdict
from mmsim.protocols.dynamic import (
    TASK_FAMILIES,
    TaskFamily,
    TaskInstance,
    auroc,
    compute,
    ece,
    fit_isotonic,
    fit_logistic,
    task_family,
)
from mmsim.protocols.dynamic.calibration import agreement, cross_fitted
from mmsim.protocols.dynamic.data import DYN_DATASETS
from mmsim.protocols.dynamic.perturb import content_tokens, corrupt, overlap_f1, paraphrase
from mmsim.protocols.dynamic.report import text_radar
from mmsim.runtime import run_scenario
from mmsim.scenario import load_any_scenario
from mmsim.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "dynamic_eval.yaml"


def _item(**kw: Any) -> Sample:
    base: dict[str, Any] = {
        "id": "x1", "question": "How many red circles are there?\nChoices:\nA: 2\nB: 3\nC: 4",
        "answer": "B", "answer_format": AnswerFormat(kind="choice", letters=("A", "B", "C"),
                                                     options=("2", "3", "4")),
        "difficulty": 0.0,
        "meta": {"caption": "The image shows 5 shapes scattered on a white background, "
                            "including 3 red circles and 2 blue squares.",
                 "pose": "How many blue squares are there in the image? 2", "count": 5}}
    base.update(kw)
    return Sample(**base)


def _inst(family: str, item: Sample | None = None, seed: int = 0) -> TaskInstance:
    return TASK_FAMILIES.get(family).build(item or _item(), random.Random(seed))


# --------------------------------------------------------------------------- scorers
def test_qa_scorer_choice_and_numeric() -> None:
    fam = TASK_FAMILIES.get("qa")
    inst = _inst("qa")
    assert inst.scoring == "exact" and inst.chance == pytest.approx(1 / 3)
    assert fam.score("The answer is B.", inst).score == 1.0
    assert fam.score("Answer: A", inst).score == 0.0
    s = fam.score("I cannot tell.", inst)
    assert s.score == 0.0 and s.answer is None
    num = _item(question="How many?", answer="3", answer_format=AnswerFormat(kind="numeric"))
    assert fam.score("There are 3.\nAnswer: 3", _inst("qa", num)).score == 1.0
    assert fam.score("3", _inst("qa", num)).score == 1.0
    # the strict extractor: a number in prose without an answer marker is not an answer
    prose = fam.score("There are 3.", _inst("qa", num))
    assert prose.score == 0.0 and prose.answer is None
    assert fam.score("There are three... no, 4", _inst("qa", num)).score == 0.0


def test_open_answer_qa_is_judged() -> None:
    item = _item(question="What happens?", answer="A man drops a cup.",
                 answer_format=AnswerFormat(kind="exact"), meta={"open_answer": True})
    assert _inst("qa", item).scoring == "judge"
    assert not TASK_FAMILIES.get("describe-answer").applies(item)


def test_verify_scorer_and_candidates() -> None:
    fam = TASK_FAMILIES.get("verify")
    seen = set()
    for seed in range(20):
        inst = _inst("verify", seed=seed)
        seen.add(inst.expected)
        right = inst.meta["candidate"].startswith("B")
        assert inst.expected == ("yes" if right else "no")
        assert fam.score(f"Let me check.\nAnswer: {inst.expected}", inst).score == 1.0
        other = "no" if inst.expected == "yes" else "yes"
        assert fam.score(f"Answer: {other}", inst).score == 0.0
    assert seen == {"yes", "no"}
    assert fam.score("Maybe.", _inst("verify")).answer is None


def test_count_describe_eliminate_scorers() -> None:
    count = _inst("count")
    assert count.expected == "5"
    assert TASK_FAMILIES.get("count").score("I count 5 shapes.\nAnswer: 5", count).score == 1.0
    assert TASK_FAMILIES.get("count").score("5 shapes", count).score == 1.0
    assert TASK_FAMILIES.get("count").score("I count 5 shapes.", count).answer is None
    assert TASK_FAMILIES.get("count").score("6", count).score == 0.0
    assert not TASK_FAMILIES.get("count").applies(_item(meta={}))
    da = _inst("describe-answer")
    fam = TASK_FAMILIES.get("describe-answer")
    assert fam.score("Three red circles and two squares.\nAnswer: B", da).score == 1.0
    assert fam.score("Answer: C", da).score == 0.0
    el = _inst("eliminate")
    fam = TASK_FAMILIES.get("eliminate")
    assert el.expected == "A,C"
    assert fam.score("Answer: C, A", el).score == 1.0
    assert fam.score("Answer: A", el).score == 0.0
    assert fam.score("A and C are wrong", el).answer is None  # no 'Answer:' line
    assert not fam.applies(_item(answer="3", answer_format=AnswerFormat(kind="numeric")))


def test_judged_families_and_perturbations() -> None:
    cap, pose = _inst("caption"), _inst("pose")
    assert cap.scoring == pose.scoring == "judge"
    assert cap.expected.startswith("The image shows 5 shapes")
    rng = random.Random(0)
    for _ in range(20):
        p = paraphrase(cap.expected, rng)
        assert p != cap.expected and overlap_f1(p, cap.expected) == 1.0
        for kind in ("object", "attribute", "count", "action"):
            c, k = corrupt(cap.expected, rng, kind)  # type: ignore[arg-type]
            assert k == kind and overlap_f1(c, cap.expected) < 1.0
    assert content_tokens("three red discs")["circle"] == 1
    assert corrupt("no content here", rng) == ("no content here", None)


def test_user_task_family_plugin(tmp_path: Path) -> None:
    @task_family("yes-first-test")
    class YesFirst(TaskFamily):
        code, title = "T9", "test family"

        def build(self, item: Sample, rng: random.Random) -> TaskInstance:
            return self.exact(item, "Say it: " + item.question, item.answer,
                              item.answer_format)

    assert "yes-first-test" in TASK_FAMILIES
    inst = _inst("yes-first-test")
    assert TASK_FAMILIES.get("yes-first-test").score("Answer: B", inst).score == 1.0
    plugin = tmp_path / "fam.py"
    plugin.write_text(
        "from mmsim.protocols.dynamic import TaskFamily, task_family\n"
        "@task_family('upper-qa')\n"
        "class Upper(TaskFamily):\n"
        "    code, title = 'T8', 'upper-case QA'\n"
        "    def build(self, item, rng):\n"
        "        return self.exact(item, item.question.upper(), item.answer,"
        " item.answer_format)\n")
    scn = tmp_path / "s.yaml"
    scn.write_text(SCENARIO.read_text().replace(
        "tasks: [qa, caption, pose, verify, count, describe-answer, eliminate]",
        "tasks: [qa, upper-qa, verify]"))
    r = run_cli("validate", str(scn), "--plugin", str(plugin))
    assert r.returncode == 0, r.stderr
    r = run_cli("validate", str(scn))
    assert r.returncode == 2 and "unknown task family 'upper-qa'" in r.stderr


# --------------------------------------------------------------------------- judge
class _Scripted(Backend):
    def __init__(self, replies: list[str]):
        super().__init__("scripted", {})
        self.replies = list(replies)
        self.calls = 0

    async def generate(self, request: GenerateRequest) -> Completion:
        assert request.purpose == "judge"
        self.calls += 1
        return Completion(text=self.replies.pop(0), usage=Usage(prompt_tokens=10,
                                                                completion_tokens=3))


def _judge(replies: list[str], retries: int = 2) -> tuple[Verdict, _Scripted]:
    backend = _Scripted(replies)

    async def go() -> Verdict:
        async with ActorSystem() as system:
            j = system.spawn(JudgeActor("j", backend, retries=retries))
            return await j.ask(JudgeRequest(run_id="r", episode_id="e", turn=0, question="q",
                                            output="o", reference="ref"))
    return anyio.run(go), backend


def test_judge_verdict_parsing_retry_and_unparsed() -> None:
    v, b = _judge(["Score: 4\nReason: close to the reference"])
    assert v.score == pytest.approx(0.8) and v.reason == "close to the reference"
    assert v.parse == "parsed" and b.calls == 1 and v.usage.prompt_tokens == 10
    v, b = _judge(["It is fine.", "Score: 9", "score = 2\nReason: wrong count"])
    assert v.score == pytest.approx(0.4) and b.calls == 3  # retried twice
    assert v.usage.prompt_tokens == 30 and v.usage.completion_tokens == 9  # tokens summed
    v, b = _judge(["no score", "still none", "nope"])
    assert v.score is None and v.parse == "unparsed" and v.reason == "nope"


# --------------------------------------------------------------------------- calibration
def test_auroc_ece_and_maps() -> None:
    assert auroc([0.9, 0.8, 0.3, 0.1], [1, 1, 0, 0]) == 1.0
    assert auroc([0.1, 0.3, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert auroc([0.5] * 4, [1, 0, 1, 0]) == 0.5
    assert auroc([0.9, 0.2, 0.6, 0.4], [1, 1, 0, 0]) == 0.5
    assert auroc([1.0], [1]) is None
    assert ece([1.0, 1.0, 0.0, 0.0], [1, 1, 0, 0]) == 0.0
    assert ece([0.8] * 10, [1] * 5 + [0] * 5) == pytest.approx(0.3)
    rng = random.Random(0)
    s = [rng.random() for _ in range(400)]
    y = [int(rng.random() < x) for x in s]
    assert 0.7 < auroc(s, y) < 0.9  # type: ignore[operator]
    iso = fit_isotonic(s, y)
    grid = [i / 20 for i in range(21)]
    vals = [iso(g) for g in grid]
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(vals))
    assert ece(iso.apply(s), y) < ece([0.5] * len(s), y)  # type: ignore[operator]
    lg = fit_logistic(s, y)
    assert lg.a > 0 and lg(0.1) < 0.5 < lg(0.9)
    assert len(cross_fitted("isotonic", s, y)) == len(s)
    ag = agreement([0.0, 0.5, 1.0], [0.0, 0.5, 1.0])
    assert ag["pearson"] == pytest.approx(1.0) and ag["exact"] == 1.0


# --------------------------------------------------------------------------- runs
def _scenario(tmp: Path, *extra: str, size: int = 80) -> Path:
    p = tmp / "dyn.yaml"
    text = SCENARIO.read_text().replace("size: 80", f"size: {size}")
    text = text.replace("bootstrap: 1000", "bootstrap: 300")
    p.write_text(text + "".join(extra))
    return p


def _run(scn: Path, out: Path) -> dict[str, Any]:
    loaded = load_any_scenario(scn)
    assert loaded.kind == "dynamic"
    anyio.run(lambda: run_scenario(loaded, out))
    store = RunStore.open(out, create=False)
    try:
        return compute(store)
    finally:
        store.close()


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("dyn")
    scn = _scenario(tmp)
    return scn, _run(scn, tmp / "run")


def test_contamination_sharpens_the_vector(study: tuple[Path, dict[str, Any]]) -> None:
    _, m = study
    assert m["simulated"] and m["scoring_judge"] == "judge"
    models = {x["name"]: x for x in m["models"]}
    base, cont = models["base"], models["contaminated"]
    assert cont["vector"]["qa"]["value"] > base["vector"]["qa"]["value"]
    for task in m["tasks"]:
        v = base["vector"][task]
        assert v["lo"] is not None and v["lo"] <= v["value"] <= v["hi"]
        if task != "qa":
            assert cont["vector"][task]["value"] <= base["vector"][task]["value"], task
    assert cont["sharpness"]["value"] > 0.1 > base["sharpness"]["value"]
    assert cont["sharpness"]["lo"] > 0  # the contaminated model is sharp beyond noise
    assert cont["worst_task"]["task"] != "qa"
    j, r = m["judges"]["judge"], m["judges"]["random-judge"]
    assert j["auroc"] > 0.85 and not j["refused"]
    assert 0.35 < r["auroc"] < 0.65 and r["refused"]
    assert j["mean_paraphrase"] > j["mean_corruption"]
    assert j["agreement"]["pearson"] > 0.7 > abs(r["agreement"]["pearson"] or 0)
    assert j["scoring_prompt_tokens"] > 0 and j["prompt_tokens"] > 0
    assert set(j["auroc_by_corruption"]) == {"object", "attribute", "count", "action"}
    radar = text_radar(m)
    assert "T0" in radar and "contaminated" in radar


def test_resume_gives_identical_metrics(study: tuple[Path, dict[str, Any]],
                                        tmp_path: Path) -> None:
    scn, full = study
    part = tmp_path / "part"
    _run(scn, part)
    db = sqlite3.connect(part / "mmsim.sqlite")
    with db:
        ids = [r[0] for r in db.execute("SELECT episode_id FROM episodes")]
        lost = ids[::3]  # a crash that lost a third of the episodes, in both phases
        db.executemany("DELETE FROM episodes WHERE episode_id=?", [(e,) for e in lost])
        db.executemany("DELETE FROM messages WHERE episode_id=?", [(e,) for e in lost])
    db.close()
    resumed = _run(scn, part)
    for key in ("models", "judges", "counts", "tasks"):
        assert resumed[key] == full[key], key


def test_cli_random_judge_refused(tmp_path: Path) -> None:
    scn = _scenario(tmp_path, size=20)
    out = tmp_path / "run"
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress",
                "--set", "judge.use=random-judge")
    assert r.returncode == 2, r.stderr
    assert "judge 'random-judge' is refused for scoring open outputs" in r.stderr
    assert "AUROC" in r.stderr and "min_auroc 0.75" in r.stderr
    assert "Traceback" not in r.stderr
    store = RunStore.open(out, create=False)
    try:
        m = compute(store)
    finally:
        store.close()
    assert m["status"] == "refused" and m["models"] == []
    assert m["judges"]["random-judge"]["refused"]
    r = run_cli("report", str(out))
    assert r.returncode == 0 and "REFUSED" in r.stdout
    r = run_cli("report", str(out), "--format", "html", "-o", str(tmp_path / "r.html"))
    assert r.returncode == 0
    html = (tmp_path / "r.html").read_text()
    assert "judge calibration" in html and "REFUSED" in html


def test_cli_run_prints_vectors_and_html_radar(tmp_path: Path) -> None:
    scn = _scenario(tmp_path, size=24)
    out = tmp_path / "run"
    r = run_cli("run", str(scn), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "Ability vectors" in r.stdout and "Judge calibration" in r.stdout
    assert "SIMULATED" in r.stdout and "T0" in r.stdout
    r = run_cli("report", str(out), "--format", "json")
    assert json.loads(r.stdout)["schema"] == "mmsim.dynamic.v1"
    r = run_cli("report", str(out), "--format", "html", "-o", str(tmp_path / "r.html"))
    html = (tmp_path / "r.html").read_text()
    assert 'class="plot radar"' in html and "This section failed" not in html
    r = run_cli("validate", str(scn), "--set", "judge.use=nobody")
    assert r.returncode == 2 and "judge.use" in r.stderr


# --------------------------------------------------------------------------- adapters
def _png(colour: str = "red") -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (8, 8), colour).save(buf, format="PNG")
    return buf.getvalue()


def _load(name: str, options: dict[str, Any], tmp: Path) -> list[Sample]:
    return DYN_DATASETS.get(name)(options, base_dir=tmp, cache_dir=tmp / "cache", limit=None)


def test_mme_release_folders(tmp_path: Path) -> None:
    root = tmp_path / "MME_Benchmark_release_version"
    (root / "artwork" / "images").mkdir(parents=True)
    (root / "artwork" / "questions_answers_YN").mkdir()
    (root / "artwork" / "images" / "10002.jpg").write_bytes(_png())
    (root / "artwork" / "questions_answers_YN" / "10002.txt").write_text(
        "Is this artwork created by Van Gogh? Please answer yes or no.\tYes\n"
        "Is this artwork created by Monet? Please answer yes or no.\tNo\n")
    (root / "existence").mkdir()  # flat layout: the image and its .txt side by side
    (root / "existence" / "000000006040.jpg").write_bytes(_png("blue"))
    (root / "existence" / "000000006040.txt").write_text(
        "Is there a train in this image? Please answer yes or no.\tYes\n"
        "Is there a bed in this image? Please answer yes or no.\tNo\n")
    items = _load("mme", {"path": str(root)}, tmp_path)
    assert [s.answer for s in items] == ["Yes", "No", "Yes", "No"]
    assert {s.category for s in items} == {"artwork", "existence"}
    assert items[0].images[0].uri.endswith("10002.jpg")
    assert _inst("qa", items[0]).chance == 0.5


def test_mme_parquet_and_realworldqa(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    img = {"bytes": _png(), "path": "x.png"}
    pq.write_table(pa.Table.from_pylist([
        {"question_id": "code_reasoning/0020.png", "image": img,
         "question": "Is the output 3? Please answer yes or no.", "answer": "Yes",
         "category": "code_reasoning"},
        {"question_id": "code_reasoning/0020.png", "image": img,
         "question": "Is the output 5? Please answer yes or no.", "answer": "No",
         "category": "code_reasoning"}]), tmp_path / "test-00000-of-00001.parquet")
    items = _load("mme", {"path": "test-00000-of-00001.parquet"}, tmp_path)
    assert len(items) == 2 and items[0].id != items[1].id and items[1].answer == "No"
    rw = tmp_path / "rwqa"
    rw.mkdir()
    pq.write_table(pa.Table.from_pylist([
        {"image": img, "question": "Which object is closer?\n\nA. The car\nB. The sign\n\n"
                                   "Please answer directly with only the letter.",
         "answer": "A"},
        {"image": img, "question": "How many lanes are there?", "answer": "3"}]),
        rw / "test-00000-of-00002.parquet")
    items = _load("realworldqa", {"path": str(rw)}, tmp_path)
    assert items[0].answer_format.kind == "choice" and items[0].answer_format.letters == \
        ("A", "B")
    assert items[1].answer_format.kind == "numeric"
    assert TASK_FAMILIES.get("eliminate").applies(items[0]) is False  # only two options
    (tmp_path / "img.png").write_bytes(_png())
    (tmp_path / "rw.json").write_text(json.dumps(
        [{"image": "img.png", "question": "Is it red?", "answer": "Yes"}]))
    items = _load("realworldqa", {"path": "rw.json"}, tmp_path)
    assert items[0].images[0].uri.endswith("img.png") and items[0].answer == "Yes"


def test_cvrr_es_annotations(tmp_path: Path) -> None:
    root = tmp_path / "CVRR-ES"
    dim = root / "interpretation_of_visual_context"
    dim.mkdir(parents=True)
    (dim / "annotations_interpretation_of_visual_context.json").write_text(json.dumps([
        {"VideoID": "163.mp4", "Q": "Why is the person laughing?",
         "A": "Because the dog jumped into the pool."},
        {"VideoID": "164.mp4", "Q": "What happens at the end?", "A": "The car stops."}]))
    (dim / "163.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    items = _load("cvrr-es", {"path": str(root)}, tmp_path)
    assert len(items) == 2 and items[0].videos[0].uri.endswith("163.mp4")
    assert items[0].category == "interpretation_of_visual_context"
    assert _inst("qa", items[0]).scoring == "judge"  # open answers: judged
    (dim / "annotations_interpretation_of_visual_context.json").write_text(
        json.dumps([{"VideoID": "1.mp4", "Q": "?"}]))
    with pytest.raises(DataError, match="missing 'A'"):
        _load("cvrr-es", {"path": str(root)}, tmp_path)
