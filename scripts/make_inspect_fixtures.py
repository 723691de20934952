"""Write real Inspect AI logs (.eval and .json) with reasoning blocks, used as test fixtures.

Run in a separate virtualenv that has inspect_ai: `python scripts/make_inspect_fixtures.py OUTDIR`, then copy
the two logs to tests/traces/fixtures/inspect_real.{eval,json}. The mock model is given token usage so that
Inspect does not try to download a tokenizer.
"""

import sys

from inspect_ai import Task
from inspect_ai import eval as inspect_eval
from inspect_ai.dataset import Sample
from inspect_ai.model import ChatMessageAssistant, ContentReasoning, ContentText, ModelOutput, ModelUsage, get_model
from inspect_ai.scorer import match
from inspect_ai.solver import generate


def main(out: str) -> None:
    outputs = []
    for text, reasoning in [("4", "Two plus two is four."), ("Paris", "The capital of France is Paris.")]:
        msg = ChatMessageAssistant(
            content=[ContentReasoning(reasoning=reasoning), ContentText(text=text)], model="mockllm/model"
        )
        o = ModelOutput.from_message(msg)
        o.usage = ModelUsage(input_tokens=5, output_tokens=7, total_tokens=12)
        outputs.append(o)
    samples = [
        Sample(input="What is 2+2?", target="4", id="arith"),
        Sample(input="Capital of France?", target="Paris", id="geo"),
    ]
    task = Task(dataset=samples, solver=generate(), scorer=match())
    for fmt in ("eval", "json"):
        model = get_model("mockllm/model", custom_outputs=list(outputs), memoize=False)
        inspect_eval(task, model=model, log_dir=f"{out}/{fmt}", log_format=fmt, display="none", max_samples=1)


if __name__ == "__main__":
    main(sys.argv[1])
