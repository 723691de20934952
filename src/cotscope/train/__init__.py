"""Training recipes: the papers' model organisms and safer models.

Data builders (each a command and a function, recorded as a run in the store):

- SafeChain SFT data: K samples per prompt, keep the prompts whose K samples are all safe, one response each.
- Emergent-misalignment data (Thought Crime): paired records -> misaligned answers in non-reasoning mode, and
  an aligned control set.
- Backdoor data: a trigger line on a fraction of the examples paired with the target behaviour, a control
  line (or none) with the normal one; every parameter written into each record's metadata.
- Self-monitor data (CoT Monitor+): reasoning, a ``<monitor>`` self-assessment, then the answer.

Training: LoRA SFT (TRL + PEFT) on any causal LM, and GRPO with the self-monitor reward; each run recorded in
the store, its adapter loadable as ``local/PATH``.
"""

# -- data builders --
from cotscope.train._backdoor import CONDITIONS, build_backdoor
from cotscope.train._em import build_em, control_path
from cotscope.train._records import (
    BuildReport,
    SFTRecord,
    assistant_text,
    file_sha256,
    parse_sft_record,
    read_sft_records,
    write_records,
)
from cotscope.train._safechain import SAFECHAIN_PARTS, build_safechain
from cotscope.train._selfmonitor import MONITOR_FALLBACK, build_self_monitor, self_monitor_completion

# -- training --
# isort: split
from cotscope.train._base import ADAPTER_META, LoraOptions, TrainReport, latest_checkpoint, pick_device, resolve_base
from cotscope.train._grpo import REWARD_CURVE, GRPOOptions, read_prompt_records, train_grpo
from cotscope.train._reward import REWARDS, SelfMonitorReward, get_reward, reward, reward_names
from cotscope.train._sft import SFTOptions, sft_examples, train_sft

# -- demonstrations --
# isort: split
from cotscope.train._demos import (
    ORGANISM_SFT,
    SELF_MONITOR_GRPO,
    SELF_MONITOR_SFT,
    ConditionRate,
    OrganismReport,
    SelfMonitorReport,
    backdoor_organism,
    condition_rates,
    self_monitor_grpo,
    toy_prompts,
    xstest_prompts,
)

__all__ = [  # noqa: RUF022 (one sorted group per marker)
    # -- data builders --
    "CONDITIONS",
    "MONITOR_FALLBACK",
    "SAFECHAIN_PARTS",
    "BuildReport",
    "SFTRecord",
    "assistant_text",
    "build_backdoor",
    "build_em",
    "build_safechain",
    "build_self_monitor",
    "control_path",
    "file_sha256",
    "parse_sft_record",
    "read_sft_records",
    "self_monitor_completion",
    "write_records",
    # -- training --
    "ADAPTER_META",
    "REWARDS",
    "REWARD_CURVE",
    "GRPOOptions",
    "LoraOptions",
    "SFTOptions",
    "SelfMonitorReward",
    "TrainReport",
    "get_reward",
    "latest_checkpoint",
    "pick_device",
    "read_prompt_records",
    "resolve_base",
    "reward",
    "reward_names",
    "sft_examples",
    "train_grpo",
    "train_sft",
    # -- demonstrations --
    "ORGANISM_SFT",
    "SELF_MONITOR_GRPO",
    "SELF_MONITOR_SFT",
    "ConditionRate",
    "OrganismReport",
    "SelfMonitorReport",
    "backdoor_organism",
    "condition_rates",
    "self_monitor_grpo",
    "toy_prompts",
    "xstest_prompts",
]
