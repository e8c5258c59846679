#!/usr/bin/env python3
"""The reference for bench/data.sh: what a transformers user runs to get
assistant-masked training ids (TRL style): apply_chat_template per
conversation, tokenize, and locate each answer by rendering prefixes.

    bench/reference_data.py DATA.jsonl TOKENIZER_DIR
Prints one JSON line: rows, seconds, rows_per_s.
"""

import json
import sys
import time

from transformers import AutoTokenizer


def main() -> None:
    path, tok_dir = sys.argv[1], sys.argv[2]
    tok = AutoTokenizer.from_pretrained(tok_dir)
    start = time.perf_counter()
    rows = tokens = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            messages = json.loads(line)["messages"]
            full = tok.apply_chat_template(messages, tokenize=False)
            ids = tok(full, add_special_tokens=False, return_offsets_mapping=True)
            spans = []
            for i, m in enumerate(messages):
                if m["role"] == "assistant":
                    before = tok.apply_chat_template(messages[:i], tokenize=False,
                                                     add_generation_prompt=True)
                    through = tok.apply_chat_template(messages[:i + 1], tokenize=False)
                    spans.append((len(before), len(through)))
            labels = [t if any(a <= o[0] < b for a, b in spans) else -100
                      for t, o in zip(ids["input_ids"], ids["offset_mapping"])]
            rows += 1
            tokens += len(labels)
    secs = time.perf_counter() - start
    print(json.dumps({"rows": rows, "tokens": tokens, "seconds": round(secs, 2),
                      "rows_per_s": round(rows / secs)}))


if __name__ == "__main__":
    main()
