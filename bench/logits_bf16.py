"""bench/logits-bf16.sh's Python side.

    logits_bf16.py cases MODEL_DIR OUT.json      cases.json of English text,
                                                 tokenized by transformers
    logits_bf16.py reference MODEL_DIR CASES OUT transformers' logits in bf16,
                                                 f32, and f32 on bf16 weights
    logits_bf16.py compare OURS.json REF.json    argmax agreement and the
                                                 largest |diff| against each
"""
import json
import sys

TEXTS = [
    "The capital of France is Paris. It is known for the Eiffel Tower, the Louvre and its cafes.",
    "To make a cup of tea, boil water, pour it over the leaves and wait three to five minutes.",
    "Photosynthesis is the process by which green plants turn light, water and carbon dioxide "
    "into sugar and oxygen.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "Once upon a time, in a small village by the sea, there lived an old fisherman and his cat.",
]


def cases(model_dir, out):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = [{"name": f"text{i}", "token_ids": tok(t)["input_ids"]} for i, t in enumerate(TEXTS)]
    json.dump({"cases": rows}, open(out, "w"))


def reference(model_dir, cases_path, out):
    """transformers' logits three ways: bf16 (weights and activations), f32,
    and f32 compute on the bf16-rounded weights (what --dtype bf16 holds)."""
    import torch
    from transformers import AutoModelForCausalLM

    models = {
        "bf16": AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16),
        "f32": AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32),
        "rounded": AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).float(),
    }
    results = {k: [] for k in models}
    with torch.no_grad():
        for case in json.load(open(cases_path))["cases"]:
            ids = torch.tensor([case["token_ids"]])
            for k, model in models.items():
                logits = model.eval()(ids).logits[0].float()
                results[k].append({"name": case["name"], "token_ids": case["token_ids"],
                                   "logits": logits.tolist()})
    json.dump({k: {"cases": v} for k, v in results.items()}, open(out, "w"))


def argmax(row):
    return max(range(len(row)), key=row.__getitem__)


def distance(a, b):
    """Largest |a - b| over a case, relative to b's largest |logit|."""
    scale = max(abs(v) for row in b for v in row)
    return max(max(abs(x - y) for x, y in zip(ra, rb)) for ra, rb in zip(a, b)) / scale


def compare(ours_path, ref_path):
    ours = json.load(open(ours_path))["cases"]
    ref = json.load(open(ref_path))
    positions = agree = 0
    worst_bf16 = worst_ratio = worst_exact = 0.0
    for o, b, f, r in zip(ours, ref["bf16"]["cases"], ref["f32"]["cases"], ref["rounded"]["cases"]):
        assert o["token_ids"] == b["token_ids"], o["name"]
        for ro, rb in zip(o["logits"], b["logits"]):
            positions += 1
            agree += argmax(ro) == argmax(rb)
        d = distance(o["logits"], b["logits"])
        worst_bf16 = max(worst_bf16, d)
        worst_ratio = max(worst_ratio, d / distance(f["logits"], b["logits"]))
        worst_exact = max(worst_exact, distance(o["logits"], r["logits"]))
    share = agree / positions
    print(f"argmax agrees with transformers bf16 at {agree}/{positions} positions "
          f"({share:.1%}; goal >= 99%)")
    print(f"max |diff| vs transformers bf16: {worst_bf16:.2e} of the largest |logit|, "
          f"{worst_ratio:.2f}x transformers' own f32-vs-bf16 distance (bound 1.1x)")
    print(f"max |diff| vs transformers f32 on the same bf16 weights: {worst_exact:.1e} "
          f"of the largest |logit| (bound 1e-4)")
    ok = share >= 0.99 and worst_ratio <= 1.1 and worst_exact <= 1e-4
    print("bf16: ok" if ok else "bf16: OUT OF BOUNDS")


if __name__ == "__main__":
    {"cases": cases, "reference": reference, "compare": compare}[sys.argv[1]](*sys.argv[2:])
