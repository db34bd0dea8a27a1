"""The HTML report: structure (always), and rendering in headless Chromium (when installed)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import SMALL, run_cli
from typer.testing import CliRunner

from mmsim.backends import BACKENDS
from mmsim.backends.sim import SimBackend
from mmsim.cli import app
from mmsim.metrics.outcomes import EpisodeOutcome, regressed
from mmsim.report.html import build_html
from mmsim.report.sections import SECTIONS, RunContext, section
from mmsim.report.transcripts import stratified_sample
from mmsim.runtime import run_scenario
from mmsim.runtime.manifest import describe_agent, is_secret_name, redact
from mmsim.scenario import load_scenario
from mmsim.store import RunStore

MAX_EPISODES = 60
CHROMIUM = Path("/usr/bin/chromium")


def _run(tmp: Path, text: str, name: str) -> Path:
    scn = tmp / f"{name}.yaml"
    scn.write_text(text)
    loaded = load_scenario(scn)
    out = tmp / name
    anyio.run(lambda: run_scenario(loaded, out))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("report")
    return _run(tmp, SMALL, "a"), _run(tmp, SMALL.replace("seed: 3", "seed: 4"), "b")


@pytest.fixture(scope="module")
def report(runs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html") / "report.html"
    r = CliRunner().invoke(app, ["report", str(runs[0]), "--format", "html", "-o", str(out),
                                 "--max-episodes", str(MAX_EPISODES)])
    assert r.exit_code == 0, r.output
    return out


class _Page(HTMLParser):
    """Tags, attributes, ids and script contents of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.attrs: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.ids: set[str] = set()
        self.sections: list[str] = []
        self.classes: Counter[str] = Counter()
        self.scripts: dict[str, str] = {}
        self._script: str | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        a = {k: v or "" for k, v in attrs}
        for k, v in a.items():
            self.attrs.append((tag, k, v))
        if "id" in a:
            self.ids.add(a["id"])
        if "data-section" in a:
            self.sections.append(a["data-section"])
        for c in a.get("class", "").split():
            self.classes[f"{tag}.{c}"] += 1
        if tag == "script":
            self._script = a.get("id", f"inline-{self.tags['script']}")
            self.scripts[self._script] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self.scripts[self._script] += data
        else:
            self.text.append(data)


def _parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def test_html_has_sections_plots_and_embedded_data(report: Path) -> None:
    page = _parse(report)
    text = " ".join(page.text)
    assert "simulated-banner" in page.ids and "SIMULATED AGENTS" in text
    for name in ("interfeedback.overview", "interfeedback.accuracy", "interfeedback.rounds",
                 "interfeedback.failures", "interfeedback.tokens", "manifest"):
        assert name in page.sections
    assert page.tags["svg"] >= 4
    assert page.classes["rect.bar"] >= 12 and page.classes["path.errbar"] >= 12
    assert page.classes["polyline.curve"] >= 12  # 2 receivers x 6 provider/policy curves
    assert {"transcripts", "filters", "episodes", "mmsim-data"} <= page.ids
    data = json.loads(page.scripts["mmsim-data"])
    eps = data["episodes"]
    assert 0 < len(eps) <= MAX_EPISODES
    run = data["runs"][0]
    assert run["embedded"] == len(eps) and run["total"] > MAX_EPISODES
    assert f"{len(eps)} of {run['total']} episodes embedded" in text
    # stratified: every outcome present in the run is present in the sample
    present = {k for k, v in run["outcomes"].items() if v}
    assert present <= {e["outcome"] for e in eps}
    assert {"corrected", "never_corrected", "first_correct"} <= present
    # each distinct image once, as a data URI, referenced by the sha256 of the original
    shas = {s for e in eps for ev in e["events"] for s in ev.get("images", [])}
    assert shas and shas == set(data["images"])
    assert all(u.startswith("data:image/") for u in data["images"].values())
    fb = next(e for e in eps if e["kind"] == "feedback")
    kinds = [ev["t"] for ev in fb["events"]]
    assert kinds[0] == "turn" and "response" in kinds and "grade" in kinds
    if fb["outcome"] == "never_corrected" or fb["round"] > 0:
        assert "feedback" in kinds


def test_html_is_self_contained(report: Path) -> None:
    page = _parse(report)
    assert page.tags["link"] == 0 and page.tags["iframe"] == 0
    for tag, name, value in page.attrs:
        if name in ("src", "href", "xlink:href", "action", "data", "poster"):
            assert value.startswith(("#", "data:")), (tag, name, value)
        assert "://" not in value or name == "data-id", (tag, name, value)
    assert all(not re.search(r"\bsrc\s*=", s) for s in page.scripts)  # no <script src>
    raw = report.read_text(encoding="utf-8")
    assert "@import" not in raw and "url(http" not in raw


def test_html_shows_manifest(report: Path, runs: tuple[Path, Path]) -> None:
    page = _parse(report)
    text = " ".join(page.text)
    store = RunStore.open(runs[0], create=False)
    try:
        m = (store.run() or {})["manifest"]
    finally:
        store.close()
    assert m["scenario_sha256"] in text and m["dataset"]["fingerprint"] in text
    assert m["prompt_templates"]["env.instructions.choice"] in text


def test_report_json_manifest_fields(runs: tuple[Path, Path]) -> None:
    from mmsim.policies.builtin import DETAILED_PROMPT
    from mmsim.protocols.interfeedback.env import INSTRUCTIONS, REASK

    r = CliRunner().invoke(app, ["report", str(runs[0]), "--format", "json"])
    assert r.exit_code == 0, r.output
    m = json.loads(r.stdout)["manifest"]
    for k in ("scenario_file", "scenario_sha256", "mmsim_version", "git_commit", "seeds",
              "agents", "dataset", "prompt_templates", "fingerprint"):
        assert k in m
    assert m["seeds"]["scenario"] == 3 and m["seeds"]["dataset"] == 1
    assert len(m["scenario_sha256"]) == 64 and len(m["dataset"]["fingerprint"]) == 64
    a = m["agents"]["r2"]
    assert a["backend"] == "sim" and a["params"]["format_noise"] == 0.1
    assert {"model", "endpoint", "sampling"} <= a.keys()
    sha = hashlib.sha256
    t = m["prompt_templates"]
    assert t["env.instructions.choice"] == sha(INSTRUCTIONS["choice"].encode()).hexdigest()
    assert t["env.reask"] == sha(REASK.encode()).hexdigest()
    assert t["policies.detailed_prompt"] == sha(DETAILED_PROMPT.encode()).hexdigest()
    assert {"policy.binary.source", "policy.detailed.source", "policy.reveal.source"} <= t.keys()


def test_secret_params_never_reach_the_store(tmp_path: Path) -> None:
    secret = "sk-THISISASECRETVALUE123456"

    class KeyedSim(SimBackend):
        def __init__(self, name: str, params: dict[str, Any]):
            self.raw = dict(params)
            super().__init__(name, {k: v for k, v in params.items() if k == "skill"})

        def describe(self) -> dict[str, Any]:
            return {**super().describe(), "api_key": secret,
                    "headers": {"Authorization": f"Bearer {secret}", "X-Id": secret}}

    BACKENDS.register("test-keyed-sim", KeyedSim, replace=True)
    text = SMALL.replace(
        "{name: r1, backend: sim, params: {skill: 0.0}}",
        "{name: r1, backend: test-keyed-sim, params: {skill: 0.0, model: m-7b, "
        "base_url: 'http://127.0.0.1:9/v1', api_key_env: MY_ENV_VAR, session_key: s3, "
        "extra_headers: {x_token_header: pw}, max_tokens: 64, temperature: 0.2}}")
    run_dir = _run(tmp_path, text, "keyed")
    store = RunStore.open(run_dir, create=False)
    try:
        run = store.run() or {}
    finally:
        store.close()
    blob = json.dumps(run["manifest"]) + json.dumps(run["scenario"])
    for s in (secret, '"s3"', '"pw"', "MY_ENV_VAR", "api_key", "session_key", "x_token_header",
              "Authorization"):
        assert s not in blob
    assert "extra_headers" in blob  # the container stays, its secret-named key goes
    a = run["manifest"]["agents"]["r1"]
    assert a["model"] == "m-7b" and a["endpoint"] == "http://127.0.0.1:9/v1"
    assert a["sampling"] == {"temperature": 0.2, "max_tokens": 64}


def test_redaction_rules() -> None:
    for name in ("api_key", "API_KEY", "apikey", "hf_token", "token", "auth_token",
                 "client_secret", "password", "passwd", "Authorization", "aws_credentials"):
        assert is_secret_name(name), name
    for name in ("model", "base_url", "max_tokens", "max_new_tokens", "tokens_per_char",
                 "temperature", "top_k", "seed"):
        assert not is_secret_name(name), name
    out = redact({"a": [{"key": 1, "x": "Bearer abcdefghijkl"}], "token_limit": 3, "b": 2})
    assert out == {"a": [{"x": "<redacted>"}], "b": 2}
    d = describe_agent({"model": "m", "url": "http://h", "api_key": "k", "top_p": 0.9},
                       {"backend": "openai"}, backend="openai")
    assert d["model"] == "m" and d["endpoint"] == "http://h" and d["sampling"] == {"top_p": 0.9}
    assert "api_key" not in json.dumps(d)


def test_several_runs_one_page(runs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "two.html"
    r = run_cli("report", str(runs[0]), str(runs[1]), "--format", "html", "-o", str(out),
                "--max-episodes", "20")
    assert r.returncode == 0, r.stderr
    assert "2 run(s)" in r.stderr
    page = _parse(out)
    assert {"summary", "run-0", "run-1", "transcripts"} <= page.ids
    assert page.sections.count("interfeedback.accuracy") == 2
    data = json.loads(page.scripts["mmsim-data"])
    assert {e["run"] for e in data["episodes"]} == {0, 1}
    assert all(r["embedded"] <= 20 for r in data["runs"])
    text = " ".join(page.text)
    assert "#1 small (a)" in text and "#2 small (b)" in text


def test_table_and_json_still_work_and_errors(runs: tuple[Path, Path], tmp_path: Path) -> None:
    cli = CliRunner()
    r = cli.invoke(app, ["report", str(runs[0])])
    assert r.exit_code == 0 and "SIMULATED" in r.stdout
    r = cli.invoke(app, ["report", str(runs[0]), str(runs[1]), "--format", "json"])
    assert r.exit_code == 2 and "takes one RUN_DIR" in r.output
    r = cli.invoke(app, ["report", str(tmp_path), "--format", "html", "-o",
                         str(tmp_path / "x.html")])
    assert r.exit_code == 2 and "no mmsim run here" in r.output
    r = cli.invoke(app, ["report", str(runs[0]), "--format", "pdf"])
    assert r.exit_code == 2


def test_stratified_sample_is_bounded_balanced_deterministic() -> None:
    def eo(i: int, outcome: str) -> EpisodeOutcome:
        return EpisodeOutcome(f"e{i:04d}", outcome, 1, {})

    pool = ([eo(i, "corrected") for i in range(500)] + [eo(i, "never") for i in range(500, 560)]
            + [eo(i, "failed") for i in range(560, 563)])
    s = stratified_sample(pool, 100, seed=1)
    c = Counter(o.outcome for o in s)
    assert len(s) == 100 and c["failed"] == 3 and c["never"] == 48 and c["corrected"] == 49
    assert [o.episode_id for o in s] == [o.episode_id for o in stratified_sample(pool, 100, 1)]
    assert len(stratified_sample(pool, 10_000)) == len(pool)
    assert stratified_sample(pool, 0) == []


def test_regressed_definition() -> None:
    assert regressed([False, True, False]) and regressed([True, False])
    assert not regressed([False, False, True]) and not regressed([True]) and not regressed([])


def test_section_registry_custom_and_failing(runs: tuple[Path, Path]) -> None:
    @section("test.classification", title="Classification (test)", order=200)
    def custom(ctx: RunContext) -> str | None:
        return f"<p id='custom-section'>{len(ctx.outcomes)} outcomes</p>"

    @section("test.broken", title="Broken (test)", order=201)
    def broken(ctx: RunContext) -> str | None:
        raise ValueError("boom")

    @section("test.absent", title="Absent (test)", order=202)
    def absent(ctx: RunContext) -> str | None:
        return None

    try:
        html, _ = build_html([runs[0]], max_episodes=5)
    finally:
        for n in ("test.classification", "test.broken", "test.absent"):
            SECTIONS._items.pop(n, None)
    assert "id='custom-section'" in html and "Classification (test)" in html
    assert "This section failed: ValueError: boom" in html
    assert "Absent (test)" not in html


# -- headless Chromium ----------------------------------------------------------------------
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless browser checks need /usr/bin/chromium (Debian: apt-get install chromium)")


def _chromium(tmp: Path, *args: str) -> str:
    profile = tmp / "chromium-profile"
    r = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--no-first-run", "--disable-extensions",
                        f"--user-data-dir={profile}", *args],
                       capture_output=True, text=True, timeout=90)
    shutil.rmtree(profile, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def _articles(dom: str) -> list[str]:
    return re.findall(r'<article class="episode" data-outcome="([a-z_]+)"', dom)


@needs_chromium
def test_browser_renders_plots_and_filters(report: Path, tmp_path: Path) -> None:
    data = json.loads(_parse(report).scripts["mmsim-data"])
    eps = data["episodes"]
    url = report.resolve().as_uri()
    dom = _chromium(tmp_path, "--dump-dom", url)
    assert 'data-rendered="1"' in dom
    assert re.search(r'<pre id="js-errors" class="js-errors"></pre>', dom)
    assert dom.count("<svg") >= 4 and 'class="bar"' in dom
    shown = _articles(dom)
    assert len(shown) == min(50, len(eps))
    assert f'data-matching="{len(eps)}"' in dom
    assert re.search(r'<img src="data:image/[a-z]+;base64,', dom)

    n_corr = sum(e["outcome"] == "corrected" for e in eps)
    dom = _chromium(tmp_path, "--dump-dom", url + "#outcome=corrected")
    shown = _articles(dom)
    assert shown and set(shown) == {"corrected"} and len(shown) == min(50, n_corr)
    assert f'data-matching="{n_corr}"' in dom and n_corr < len(eps)

    want = [e for e in eps if e["outcome"] == "never_corrected" and e["receiver"] == "r2"
            and e["policy"] == "binary"]
    dom = _chromium(tmp_path, "--dump-dom",
                    url + "#receiver=r2&policy=binary&outcome=never_corrected")
    assert f'data-matching="{len(want)}"' in dom and len(_articles(dom)) == min(50, len(want))
    assert 'class="view-transcripts"' not in dom
    dom = _chromium(tmp_path, "--dump-dom", url + "#view=transcripts&outcome=failed")
    assert 'class="view-transcripts"' in dom and 'data-matching="0"' in dom


@needs_chromium
def test_browser_screenshot(report: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000",
              report.resolve().as_uri() + "#view=transcripts&outcome=corrected")
    assert shot.is_file()
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        colors = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50  # not a blank page
    print(f"screenshot: {shot}")


def test_tokens_section_shows_cost_when_priced(tmp_path: Path) -> None:
    text = SMALL.replace("{name: r1, backend: sim, params: {skill: 0.0}}",
                         "{name: r1, backend: sim, params: {skill: 0.0}, "
                         "prices: {input: 1.0, output: 2.0}}")
    run_dir = _run(tmp_path, text, "priced")
    html, _ = build_html([run_dir], max_episodes=0)
    tokens = html.split('data-section="interfeedback.tokens"', 1)[1].split("</section>", 1)[0]
    assert "answers after feedback" in tokens and "feedback given" in tokens
    assert "USD" in tokens and "<th>cost</th>" in tokens


def test_the_report_has_a_content_security_policy(tmp_path: Path) -> None:
    """The page allows only its own style and script (by hash) and embedded images."""
    import base64

    from conftest import play

    scn = tmp_path / "s.yaml"
    scn.write_text(SMALL.replace("size: 40", "size: 6"))
    out = tmp_path / "run"
    play(scn, out)
    html, _ = build_html([out])
    m = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)
    assert m is not None
    csp = m.group(1)
    assert "default-src 'none'" in csp and "img-src data:" in csp
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    styles = re.findall(r"<style>(.*?)</style>", html, re.S)
    assert len(scripts) == 1 and len(styles) == 1
    for text, kind in ((scripts[0], "script-src"), (styles[0], "style-src")):
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"{kind} 'sha256-{digest}'" in csp


LONG = """
name: long-names
seed: 2
dataset: {name: synthetic, size: 24, seed: 4}
receivers:
  - {name: receiver-with-a-really-long-descriptive-name-v2, backend: sim, params: {skill: 0.2}}
  - {name: another-receiver-whose-name-goes-on-and-on, backend: sim, params: {skill: -0.4}}
providers:
  - {name: sim-provider-careful-and-detailed-long-name, backend: sim, params: {skill: 2.0}}
  - {name: sim-provider-sloppy-with-an-even-longer-name-x, backend: sim, params: {skill: 1.0}}
policies: [binary, detailed, {name: detailed-then-reveal-long-policy,
  schedule: [detailed, detailed, reveal]}, retry]
protocol: {max_rounds: 3}
run: {bootstrap: 100}
"""

#: marks every SVG text that reaches outside its chart (transforms included), every text
#: drawn smaller than 8.5 px once its chart is scaled to the page, and every chart wider
#: than the page, as the page lays them out
_CLIP_PROBE = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const bad = [];
  document.querySelectorAll('svg').forEach((svg) => {
    const s = svg.getBoundingClientRect();
    if (s.width === 0) return;
    if (s.right > document.documentElement.clientWidth + 1)
      bad.push('wide:' + svg.getAttribute('aria-label'));
    const vb = svg.viewBox && svg.viewBox.baseVal;
    const scale = vb && vb.width ? s.width / vb.width : 1;
    svg.querySelectorAll('text').forEach((t) => {
      const px = parseFloat(getComputedStyle(t).fontSize) * scale;
      if (px < 8.5) bad.push('small(' + px.toFixed(1) + 'px):' + t.textContent);
      const r = t.getBoundingClientRect();
      if (r.left < s.left - 1 || r.right > s.right + 1 || r.top < s.top - 1 ||
          r.bottom > s.bottom + 1) bad.push(t.textContent);
    });
  });
  document.body.setAttribute('data-clipped', JSON.stringify(bad));
}, 50));
</script>"""


@needs_chromium
@pytest.mark.parametrize("width", [1400, 800])
def test_long_names_never_clip_in_a_browser(tmp_path: Path, width: int) -> None:
    """Every chart's labels and legends stay inside the chart, and no chart is wider than
    the page, at 1,400 and 800 px, with long agent and policy names; a screenshot of each
    width is kept (printed path)."""
    from html import unescape

    from PIL import Image

    from mmsim.report.html import build_html

    run_dir = _run(tmp_path, LONG, "long")
    html, _ = build_html([run_dir], max_episodes=20)
    page = tmp_path / "long.html"
    # the page's CSP lets only its own script run: allow the probe by its hash too
    probe = _CLIP_PROBE.removeprefix("<script>").removesuffix("</script>")
    digest = base64.b64encode(hashlib.sha256(probe.encode()).digest()).decode()
    html = html.replace("script-src ", f"script-src 'sha256-{digest}' ", 1)
    page.write_text(html.replace("</body>", _CLIP_PROBE + "</body>"), encoding="utf-8")
    url = page.resolve().as_uri()
    dom = _chromium(tmp_path, f"--window-size={width},1200", "--virtual-time-budget=3000",
                    "--dump-dom", url)
    m = re.search(r'data-clipped="([^"]*)"', dom)
    assert m is not None, "the probe did not run"
    assert json.loads(unescape(m.group(1))) == []
    assert dom.count("<svg") >= 5
    # the parse/leak chart: a row per cell with its whole label, not a squeezed column chart
    assert dom.count('class="plot hbar-chart"') == 1
    fails = dom.split('class="plot hbar-chart"', 1)[1].split("</svg>", 1)[0]
    assert fails.count('class="ylabel"') == 2 * 2 * 4  # receivers x providers x policies
    assert "receiver-with-a-really-long-descriptive-name-v2" in unescape(fails)
    shot = tmp_path / f"long-{width}.png"
    _chromium(tmp_path, f"--screenshot={shot}", f"--window-size={width},1600", url)
    with Image.open(shot) as im:
        assert im.size == (width, 1600)
        colors = im.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colors is not None and len(colors) > 50
    print(f"screenshot: {shot}")
