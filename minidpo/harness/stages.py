"""The shape of the pipeline at a glance: every stage and study, what it needs and what it writes.

    sft ─┬─ eval_sft ───────────────────────────────┬─ eval_rlhf ─┐
         ├─ prefs ─┬─ reward_model ─┬─ rlhf ────────┘             ├─ report
         │         │                ├─ ppo, grpo ── eval_ppo, eval_grpo   (run --all)
         │         └─ dpo ──────────┴────────────── eval_dpo ──────┘
    equivalence (the exact lab, needs nothing) ───────────────────┘

One table (`STAGES`) names each stage, the function that computes it ("module:function", imported
only when called), the stages whose outputs it reads, the files it writes and a line of help. The
CLI builds its commands from it and the report reads it; a new study is one more row here plus its
own module, and it never imports the pipeline: it asks `ensure(run, ...)` for what it needs.

How a stage decides to reuse its outputs is in `runfolder.Run.cached` (provenance keys); how a
command checks that what it reads is there, in `runfolder.Run.require`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    function: str               # "module:function", module a dotted name in minidpo, called as function(run, **options)
    needs: tuple[str, ...]      # stages whose outputs it reads
    reads: dict                 # role -> file of the run folder it reads (hashed into its key)
    outputs: tuple[str, ...]    # files it writes in the run folder (a study: its own subfolder)
    help: str
    study: bool = False         # a study (`run --all`), not part of the default pipeline
    default: bool = True        # part of `run` (False: only `run --all`, or its own command)
    long: bool = False          # a study of many minutes: only its own command, not `run --all`
    code: str = ""              # the module that does the work (default: the function's); it and
                                # all it imports are part of the stage's provenance key

    @property
    def code_module(self) -> str:
        return self.code or self.function.split(":")[0]

    @property
    def command(self) -> str:
        return self.name.replace("_", "-")

    def __call__(self, run, **options):
        module, fn = self.function.split(":")
        return getattr(importlib.import_module(f"minidpo.{module}"), fn)(run, **options)


def _stages(*rows: Stage) -> dict[str, Stage]:
    return {s.name: s for s in rows}


SFT = {"sft": "sft.pt"}
PAIRS = {"train_data": "prefs_train.jsonl", "val_data": "prefs_val.jsonl"}
RM = {"reward_model": "reward_model.pt"}
BASELINE = {"sft_eval": "eval_sft.json"}

STAGES = _stages(
    Stage("sft", "harness.pipeline:stage_sft", (), {}, ("sft.pt", "sft.json", "sft_metrics.json"),
          "supervised fine-tuning on the world's corpus", code="sft"),
    Stage("eval_sft", "harness.pipeline:stage_eval_sft", ("sft",), SFT, ("eval_sft.json",),
          "SFT samples on the held-out films, scored: the baseline of every win rate", code="evaluate"),
    Stage("prefs", "harness.pipeline:stage_prefs", ("sft",), SFT, ("prefs_train.jsonl", "prefs_val.jsonl", "prefs_report.json"),
          "sample pairs from the SFT model, label them by Bradley–Terry on the gold reward", code="preferences"),
    Stage("reward_model", "harness.pipeline:stage_reward_model", ("sft", "prefs"), {**SFT, **PAIRS},
          ("reward_model.pt", "reward_model.json", "reward_model_metrics.json"),
          "RLHF step 1: a Bradley–Terry reward model on the preference pairs", code="reward_model"),
    Stage("rlhf", "harness.pipeline:stage_rlhf", ("sft", "reward_model"), {**SFT, **RM},
          ("rlhf.pt", "rlhf.json", "rlhf_metrics.json"),
          "RLHF step 2: REINFORCE with a KL penalty against the reward model", code="rlhf"),
    Stage("dpo", "harness.pipeline:stage_dpo", ("sft", "prefs"), {**SFT, **PAIRS},
          ("dpo.pt", "dpo.json", "dpo_metrics.json", "dpo_log.jsonl"),
          "DPO from the SFT checkpoint on a preference file", code="dpo"),
    Stage("equivalence", "harness.pipeline:stage_equivalence", (), {}, ("equivalence.json",),
          "the exact bandit lab: DPO = RLHF = closed form", code="bandit"),
    Stage("eval_rlhf", "harness.pipeline:stage_eval_rlhf", ("sft", "eval_sft", "rlhf"),
          {"policy": "rlhf.pt", **SFT, **BASELINE}, ("eval_rlhf.json",),
          "the RLHF policy on the held-out films against SFT", code="evaluate"),
    Stage("eval_dpo", "harness.pipeline:stage_eval_dpo", ("sft", "eval_sft", "dpo"),
          {"policy": "dpo.pt", **SFT, **BASELINE}, ("eval_dpo.json",),
          "the DPO policy on the held-out films against SFT", code="evaluate"),
    Stage("ppo", "harness.pipeline:stage_ppo", ("sft", "reward_model"), {**SFT, **RM},
          ("ppo.pt", "ppo.json", "ppo_metrics.json"),
          "RLHF step 2 with PPO: value model, GAE, clipped updates (InstructGPT, TRL)", code="ppo", default=False),
    Stage("grpo", "harness.pipeline:stage_grpo", ("sft", "reward_model"), {**SFT, **RM},
          ("grpo.pt", "grpo.json", "grpo_metrics.json"),
          "RLHF step 2 with GRPO: group-normalised advantages, no value model (DeepSeekMath)", code="grpo",
          default=False),
    Stage("eval_ppo", "harness.pipeline:stage_eval_ppo", ("sft", "eval_sft", "ppo"),
          {"policy": "ppo.pt", **SFT, **BASELINE}, ("eval_ppo.json",),
          "the PPO policy on the held-out films against SFT", code="evaluate", default=False),
    Stage("eval_grpo", "harness.pipeline:stage_eval_grpo", ("sft", "eval_sft", "grpo"),
          {"policy": "grpo.pt", **SFT, **BASELINE}, ("eval_grpo.json",),
          "the GRPO policy on the held-out films against SFT", code="evaluate", default=False),
    Stage("report", "harness.report:write_report",
          ("sft", "eval_sft", "prefs", "reward_model", "rlhf", "dpo", "equivalence", "eval_rlhf", "eval_dpo"),
          {}, ("summary.json", "report.md"),  # what it reads: see report.write_report
          "summary.json, report.md and the figures, from what the folder holds"),
    # --- studies: `run --all`, or each on its own ---------------------------------------------
    Stage("overoptimisation", "studies.overoptimisation:run_overoptimisation", ("sft", "prefs", "reward_model"),
          {**SFT, **PAIRS, **RM}, ("overoptimisation/overoptimisation.json", "overoptimisation/overoptimisation.png"),
          "best-of-n and β=0 RL against the learned reward: gold peaks, proxy climbs", study=True),
    Stage("diversity", "studies.diversity:run_diversity", ("sft", "eval_sft", "prefs", "reward_model"),
          {**SFT, **PAIRS, **RM, **BASELINE}, ("diversity/diversity.json", "diversity/diversity.png"),
          "gold reward, entropy and unique responses against β", study=True),
    Stage("cost", "studies.cost:cost_table", ("reward_model", "rlhf", "dpo", "ppo", "grpo", "eval_rlhf", "eval_dpo",
                                         "eval_ppo", "eval_grpo"),
          {**{f"{m}_metrics": f"{m}_metrics.json" for m in ("reward_model", "rlhf", "dpo", "ppo", "grpo")},
           **{f"{m}_eval": f"eval_{m}.json" for m in ("rlhf", "dpo", "ppo", "grpo")}},
          ("cost.json",), "the cost table of the RLHF roads (REINFORCE, PPO, GRPO) against the DPO road",
          study=True),
    Stage("failure_modes", "studies.failure_modes:run_failure_modes", ("sft", "eval_sft", "prefs"),
          {**SFT, **PAIRS, **BASELINE}, ("failure_modes/failure_modes.json", "failure_modes/failure_modes.png"),
          "DPO's falling log-probs and a table of remedies", study=True),
    Stage("online_dpo", "studies.online_dpo:run_online_dpo", ("sft", "eval_sft", "prefs", "reward_model", "eval_dpo"),
          {**SFT, **PAIRS, **RM, **BASELINE, "dpo_eval": "eval_dpo.json"},
          ("online_dpo/online_dpo.json", "online_dpo/online_dpo.png"),
          "rounds of fresh on-policy pairs vs offline DPO at equal labels", study=True),
    Stage("museum", "studies.museum:run_museum", ("sft", "eval_sft", "prefs"),
          {**SFT, **PAIRS, **BASELINE}, ("museum/museum.json",), "the bug museum: each classic DPO bug switched "
          "on, its symptom, what the doctor says, and the gold reward it costs against the clean run, paired "
          "over 5 seeds (about a quarter of an hour)", study=True, long=True),
    Stage("microscope", "studies.microscope:run_microscope", ("sft", "prefs", "dpo"),
          {**SFT, **PAIRS, "policy": "dpo.pt"}, ("microscope/microscope.json",),
          "where the probability goes: per-pair displacement and CHES, and exact mass on an enumerable GPT",
          study=True),
    Stage("frontier", "studies.frontier:run_frontier", ("sft", "eval_sft", "prefs", "reward_model"),
          {**SFT, **PAIRS, **RM, **BASELINE}, ("frontier/frontier.json", "frontier/frontier.png"),
          "the paper's Figure 2: reward vs KL for DPO, PPO, PPO-GT, REINFORCE, GRPO, Preferred-FT and "
          "Unlikelihood, 3 seeds, two labelling conditions (about half an hour)", study=True, long=True),
    Stage("ablation", "studies.ablation:run_ablation", ("sft", "eval_sft", "prefs", "reward_model"),
          {**SFT, **PAIRS, **RM, **BASELINE}, ("frontier/ablation.json",),
          "why DPO against RL comes out as it does here: from our setting to the paper's one factor "
          "at a time (reuses the frontier's units)", study=True, long=True),
    Stage("ppo_vs_reinforce", "studies.ppo_vs_reinforce:run_ppo_vs_reinforce", ("sft", "eval_sft", "prefs", "reward_model"),
          {**SFT, **PAIRS, **RM, **BASELINE}, ("ppo_vs_reinforce/ppo_vs_reinforce.json", "ppo_vs_reinforce/ppo_vs_reinforce.png"),
          "PPO against REINFORCE on equal samples, 3 seeds, read at matched KL (the PPO lesson; about five "
          "minutes)",
          study=True, long=True),
    Stage("bridge", "studies.bridge:run_bridge", ("sft", "eval_sft", "prefs", "reward_model", "dpo", "rlhf"),
          {**SFT, **PAIRS, **RM, **BASELINE, "dpo_policy": "dpo.pt", "rlhf_policy": "rlhf.pt"},
          ("bridge/bridge.json", "bridge/bridge.png"),
          "from the exact lab to the default run: the theorem's conditions broken one at a time, DPO and RLHF "
          "measured at every rung (rung 5 reuses the frontier's, ppo-vs-reinforce's and online-dpo's units; "
          "about five minutes beyond them)", study=True, long=True),
    Stage("losses", "studies.loss_bench:run_loss_bench", ("sft", "eval_sft", "prefs", "reward_model"),
          {**SFT, **PAIRS, **RM, **BASELINE}, ("frontier/losses.json", "frontier/losses.png"),
          "the loss bench: every registered loss on the same pairs, 3 seeds, sorted by gold reward at "
          "matched KL (about a quarter of an hour)", study=True, long=True),
)

PIPELINE = tuple(name for name, s in STAGES.items() if not s.study and s.default)
OPTIONAL = tuple(name for name, s in STAGES.items() if not s.study and not s.default)
STUDIES = tuple(name for name, s in STAGES.items() if s.study and not s.long)
LONG_STUDIES = tuple(name for name, s in STAGES.items() if s.long)


def order(*names: str) -> list[str]:
    """`names` and everything they need, each once, every stage after the stages it needs."""
    out: list[str] = []

    def visit(name):
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
        for need in STAGES[name].needs:
            visit(need)
        if name not in out:
            out.append(name)
    for n in names:
        visit(n)
    return out


def ensure(run, *names: str) -> None:
    """Bring `names` and everything they need up to date in `run`'s folder, with default settings:
    a stage whose provenance key is unchanged is reused, any other is computed."""
    for name in order(*names):
        STAGES[name](run)
