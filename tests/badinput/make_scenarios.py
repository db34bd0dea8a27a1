"""Writes tests/badinput/scenarios/*.yaml: one bad scenario per file; line 1 says what the
one-line error must contain (``# expect: file.yaml:LINE | field | text``). The line is that
of the case's marker text, computed here once; the files are committed, rerun this script
after editing a case: ``python tests/badinput/make_scenarios.py``."""

from __future__ import annotations

from pathlib import Path

BASE = """name: bad
seed: 1
dataset:
  name: synthetic
  size: 6
  seed: 1
receivers:
  - name: r1
    backend: sim
    params: {skill: 0.0}
providers:
  - name: p1
    backend: sim
    params: {skill: 2.0}
policies: [binary]
protocol:
  max_rounds: 2
run:
  concurrency: 4
  bootstrap: 10
"""

def sub(old: str, new: str, base: str = BASE) -> str:
    assert old in base, old
    return base.replace(old, new, 1)

# (file stem, yaml body, marker text whose line is expected or None, expected substrings)
CASES = [
    ("yaml_unclosed_flow", sub("params: {skill: 0.0}", "params: {skill: 0.0"), None,
     ["invalid YAML"]),
    ("yaml_bad_indent", sub("  size: 6\n", "  size: 6\n   oops: 1\n"), "oops",
     ["invalid YAML"]),
    ("yaml_tab_indent", sub("  size: 6\n", "\tsize: 6\n"), "size: 6", ["invalid YAML"]),
    ("yaml_duplicate_key", sub("seed: 1\n", "seed: 1\nseed: 2\n"), "seed: 2",
     ["duplicate key 'seed'", ": seed:"]),
    ("yaml_duplicate_nested_key", sub("  size: 6\n", "  size: 6\n  size: 7\n"), "size: 7",
     ["duplicate key 'size'", "dataset.size"]),
    ("yaml_top_level_list", "- name: bad\n- seed: 1\n", "- name", ["must be a YAML mapping"]),
    ("yaml_empty", "", None, ["must be a YAML mapping"]),
    ("yaml_scalar", "just some words\n", "just", ["must be a YAML mapping"]),
    ("yaml_unhashable_key", sub("seed: 1\n", "? [a, b]\n: 1\n"), None, ["invalid YAML"]),
    ("unknown_top_key", sub("policies: [binary]", "policys: [binary]"), "policys",
     ["policys", "did you mean 'policies'"]),
    ("unknown_agent_key", sub("    params: {skill: 0.0}", "    parms: {skill: 0.0}"), "parms",
     ["receivers.0.parms", "did you mean 'params'"]),
    ("unknown_protocol_key", sub("  max_rounds: 2", "  max_round: 2"), "max_round",
     ["protocol.max_round", "did you mean 'max_rounds'"]),
    ("unknown_run_key", sub("  concurrency: 4", "  concurency: 4"), "concurency",
     ["run.concurency", "did you mean 'concurrency'"]),
    ("unknown_policy_spec_key", sub("policies: [binary]",
                                    "policies:\n  - {name: b, policy: binary, optoins: {}}"),
     "optoins", ["policies.0.optoins", "did you mean 'options'"]),
    ("seed_not_int", sub("seed: 1\n", "seed: abc\n"), "seed: abc", [": seed:", "integer"]),
    ("seed_float", sub("seed: 1\n", "seed: 1.5\n"), "seed: 1.5", [": seed:"]),
    ("max_rounds_zero", sub("  max_rounds: 2", "  max_rounds: 0"), "max_rounds",
     ["protocol.max_rounds", "greater than or equal to 1"]),
    ("max_rounds_text", sub("  max_rounds: 2", "  max_rounds: three"), "max_rounds",
     ["protocol.max_rounds", "integer"]),
    ("receivers_not_list", sub("receivers:\n  - name: r1\n    backend: sim\n"
                               "    params: {skill: 0.0}\n", "receivers: {name: r1}\n"),
     "receivers", ["receivers", "list"]),
    ("receivers_empty", sub("receivers:\n  - name: r1\n    backend: sim\n"
                            "    params: {skill: 0.0}\n", "receivers: []\n"),
     "receivers", ["receivers", "at least 1"]),
    ("unknown_backend", sub("    backend: sim\n    params: {skill: 2.0}",
                            "    backend: simm\n    params: {skill: 2.0}"), "simm",
     ["providers.0.backend", "did you mean 'sim'"]),
    ("unknown_policy", sub("policies: [binary]", "policies: [binnary]"), "binnary",
     ["policies.0", "unknown policy 'binnary'", "did you mean 'binary'"]),
    ("unknown_dataset", sub("  name: synthetic", "  name: synthetc"), "synthetc",
     ["dataset.name", "did you mean 'synthetic'"]),
    ("empty_schedule", sub("policies: [binary]", "policies:\n  - {name: s, schedule: []}"),
     "schedule", ["policies.0", "schedule is empty"]),
    ("policy_and_schedule", sub("policies: [binary]", "policies:\n"
                                "  - {name: s, policy: binary, schedule: [binary]}"),
     "schedule", ["policies.0", "not both"]),
    ("duplicate_receiver", sub("providers:", "  - name: r1\n    backend: sim\nproviders:"),
     11, ["receivers.1", "duplicate receiver name 'r1'"]),
    ("agent_twice_different", sub("  - name: p1", "  - name: r1"), 12,
     ["providers.0", "agent 'r1' is defined twice"]),
    ("name_with_spaces", sub("name: bad\n", "name: my bad run\n"), "name: my",
     [": name:", "pattern"]),
    ("name_not_string", sub("name: bad\n", "name: 123\n"), "name: 123",
     [": name:", "valid string"]),
    ("missing_dataset", sub("dataset:\n  name: synthetic\n  size: 6\n  seed: 1\n", ""),
     None, ["dataset", "Field required"]),
    ("negative_concurrency", sub("  concurrency: 4", "  concurrency: -1"), "concurrency: -1",
     ["run.concurrency", "greater than or equal to 1"]),
    ("bad_test_set", sub("  max_rounds: 2", "  max_rounds: 2\n  test_set: everything"),
     "test_set", ["protocol.test_set", "intersection"]),
    ("sim_param_unknown", sub("params: {skill: 0.0}", "params: {skil: 0.0}"), "skil",
     ["receivers.0.params.skil", "sim params"]),
    ("sim_param_wrong_type", sub("params: {skill: 2.0}", "params: {skill: high}"),
     "skill: high", ["providers.0.params.skill", "valid number"]),
    ("sim_param_out_of_range", sub("params: {skill: 0.0}",
                                   "params: {skill: 0.0, format_noise: 2}"),
     "format_noise", ["receivers.0.params.format_noise", "less than or equal to 1"]),
    ("secret_literal_in_params", sub("params: {skill: 0.0}",
                                     "params: {skill: 0.0, api_key: not-a-real-key-123}"),
     "api_key", ["receivers.0.params", "holds a credential", "api_key_env"]),
    ("secret_nested_in_params", sub("params: {skill: 2.0}", "params:\n      skill: 2.0\n"
                                    "      headers: {Authorization: Bearer abcdefgh}"),
     "headers", ["providers.0.params.headers.Authorization", "holds a credential"]),
    ("synthetic_size_negative", sub("  size: 6", "  size: -3"), "size: -3",
     ["dataset.size", "positive integer"]),
    ("synthetic_size_text", sub("  size: 6", "  size: lots"), "size: lots",
     ["dataset.size", "positive integer"]),
    ("synthetic_unknown_option", sub("  size: 6", "  sise: 6"), "sise",
     ["dataset.sise", "did you mean 'size'"]),
    ("synthetic_bad_family", sub("  size: 6", "  size: 6\n  families: [maths]"), "families",
     ["dataset.families", "unknown family 'maths'"]),
    ("mathverse_missing_file", sub("  name: synthetic\n  size: 6\n  seed: 1",
                                   "  name: mathverse\n  path: nowhere/testmini.json"),
     "path:", ["dataset.path", "file not found", "nowhere"]),
    ("mathverse_no_path", sub("  name: synthetic\n  size: 6\n  seed: 1",
                              "  name: mathverse"), "dataset:",
     ["dataset.path", "path to the local copy"]),
    ("mathverse_bad_question_field", sub("  name: synthetic\n  size: 6\n  seed: 1",
                                         "  name: mathverse\n  path: .\n"
                                         "  question_field: prompt"), "question_field: p",
     ["dataset.question_field", "must be one of"]),
    ("mmmu_pro_unknown_option", sub("  name: synthetic\n  size: 6\n  seed: 1",
                                    "  name: mmmu_pro\n  path: .\n  confg: vision"),
     "confg", ["dataset.confg", "did you mean 'config'"]),
]

# ---- hostile YAML (bounded work): an alias bomb under an unused key, deep nesting
BOMB = "x0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))
DEEP_BLOCK = "".join("  " * i + f"k{i}:\n" for i in range(1, 80)) + "  " * 80 + "v: 1\n"
CASES += [
    ("yaml_alias_bomb", sub("run:\n", BOMB.replace("x0:", "  x0:", 1).replace("\nx", "\n  x")
                            + "run:\n"), "x5:",
     ["YAML aliases expand to more than 100,000 nodes"]),
    ("yaml_alias_bomb_in_params", sub("params: {skill: 0.0}", "params:\n      skill: 0.0\n"
                                      "      extra: &b0 [a, a, a, a, a, a, a, a, a, a]\n"
                                      + "".join(f"      e{i}: &b{i} ["
                                                f"{', '.join([f'*b{i - 1}'] * 10)}]\n"
                                                for i in range(1, 7))).rstrip("\n") + "\n",
     "e4:", ["YAML aliases expand"]),
    ("yaml_nested_500_flow", sub("seed: 1\n", "seed: 1\nextra: " + "[" * 500 + "]" * 500
                                 + "\n"), "extra:", ["nested more than 64 levels"]),
    ("yaml_nested_block", sub("seed: 1\n", "seed: 1\nextra:\n" + DEEP_BLOCK), "k64:",
     ["nested more than 64 levels"]),
]
# ---- values that cannot be meant
CASES += [
    ("seed_negative", sub("seed: 1\n", "seed: -1\n"), "seed: -1",
     [": seed:", "greater than or equal to 0"]),
    ("dataset_seed_negative", sub("  seed: 1\nreceivers", "  seed: -5\nreceivers"),
     "seed: -5", ["dataset.seed", "must be >= 0"]),
    ("param_seed_negative", sub("params: {skill: 0.0}", "params: {skill: 0.0, seed: -2}"),
     "seed: -2", ["receivers.0.params.seed", "must be >= 0"]),
    ("sim_param_nan", sub("params: {skill: 0.0}", "params: {skill: .nan}"), "skill: .nan",
     ["receivers.0.params.skill", "finite number"]),
    ("sim_param_inf", sub("params: {skill: 2.0}", "params: {skill: -.inf}"), "skill: -.inf",
     ["providers.0.params.skill", "finite number"]),
    ("probability_above_one", sub("params: {skill: 2.0}",
                                  "params: {skill: 2.0, leak_rate: 1.5}"), "leak_rate",
     ["providers.0.params.leak_rate", "probability", "[0, 1]"]),
    ("dataset_size_huge", sub("  size: 6", "  size: 1000000000000"), "size: 1000",
     ["dataset.size", "at most 1,000,000"]),
    ("bootstrap_huge", sub("  bootstrap: 10", "  bootstrap: 1000000000"), "bootstrap:",
     ["run.bootstrap", "less than or equal to 100000"]),
    ("policy_option_typo", sub("policies: [binary]", "policies:\n  - name: binary\n"
                               "    options: {txt: nope}"), "options:",
     ["policies.0.options.txt", "unknown option 'txt'", "did you mean 'text'"]),
    ("policy_option_on_optionless", sub("policies: [binary]", "policies:\n  - name: reveal\n"
                                        "    options: {text: x}"), "options:",
     ["policies.0.options.text", "unknown option 'text'", "allowed: none"]),
    ("agent_name_with_slash", sub("  - name: p1", "  - name: org/p1"), "org/p1",
     ["providers.0.name", "'/'"]),
    ("agent_names_same_once_normalised", sub("  - name: p1", "  - name: R1"), 12,
     ["providers.0", "same name as 'r1'"]),
    ("server_args_secret", sub("policies: [binary]", "servers:\n  - name: s1\n"
                               "    command: [python, -m, http.server, '{port}']\n"
                               "    args: [--api-key, verysecretvalue1]\npolicies: [binary]"),
     "- name: s1", ["servers.0", "args holds a credential"]),
    ("server_env_secret", sub("policies: [binary]", "servers:\n  - name: s1\n"
                              "    command: [python, -m, http.server, '{port}']\n"
                              "    env: {HF_TOKEN: hf_abcdefghijklmnop}\npolicies: [binary]"),
     "- name: s1", ["servers.0", "env.HF_TOKEN holds a credential"]),
]

out = Path(__file__).parent / "scenarios"
for stem, body, marker, expects in CASES:
    text = body.replace("  path: .\n", f"  path: {stem}.yaml\n")
    exp = list(expects)
    lines = text.split("\n")
    if isinstance(marker, int):  # a line number of the body
        exp.insert(0, f"{stem}.yaml:{marker + 1}")
    elif marker is not None:
        first = marker.split("\n")[0]
        n = next(i for i, ln in enumerate(lines, 2) if first in ln)  # +1 for the header
        exp.insert(0, f"{stem}.yaml:{n}")
    else:
        exp.insert(0, f"{stem}.yaml")
    (out / f"{stem}.yaml").write_text(f"# expect: {' | '.join(exp)}\n{text}")
print(f"{len(CASES)} cases written to {out}")
