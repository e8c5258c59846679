#!/usr/bin/env python3
"""Benchmark inputs for `tunesmith data inspect` (stdlib + tokenizers +
transformers; never run in CI).

    bench/make_chat_data.py OUT_DIR [ROWS]

Writes OUT_DIR/chat-ROWS.jsonl: ROWS `messages` rows (system prompt on a
third, one to three user/assistant exchanges, 20-200 words per answer) from a
seeded word list, and OUT_DIR/tokenizer/: a SmolLM2-like tokenizer (byte-level
BPE with 49152 tokens, digits split, ChatML special tokens and SmolLM2's
ChatML chat template), trained on that text since no model hub is reachable.
"""

import itertools
import json
import random
import sys
from pathlib import Path

WORDS = (
    "the a model data learn tune small large token answer question river "
    "mountain city music light night garden write read explain because "
    "however quickly slowly number seven twelve hundred energy planet "
    "ocean history science story simple complex rule example method "
    "result measure compare improve train test value loss gradient step "
    "batch memory window layer weight sample stream file format error"
).split()

TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
_rng = random.Random(49152)
# Common English words plus 40k pseudo-words, drawn with Zipf-like weights,
# so the BPE can grow to a real vocabulary size.
VOCAB = WORDS + ["".join(_rng.choice(SYLLABLES) for _ in range(_rng.randint(1, 4)))
                 for _ in range(40_000)]
CUM_WEIGHTS = list(itertools.accumulate(1.0 / (rank + 10) for rank in range(len(VOCAB))))


def sentence(rng: random.Random, lo: int, hi: int) -> str:
    words = rng.choices(VOCAB, cum_weights=CUM_WEIGHTS, k=rng.randint(lo, hi))
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), str(rng.randint(0, 99999)))
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


def main() -> None:
    out = Path(sys.argv[1])
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(100)
    data = out / f"chat-{rows}.jsonl"
    with open(data, "w", encoding="utf-8") as f:
        for _ in range(rows):
            messages = []
            if rng.random() < 0.33:
                messages.append({"role": "system", "content": sentence(rng, 4, 12)})
            for _ in range(rng.randint(1, 3)):
                messages.append({"role": "user", "content": sentence(rng, 5, 30)})
                messages.append({"role": "assistant", "content": " ".join(
                    sentence(rng, 5, 25) for _ in range(rng.randint(1, 8)))})
            f.write(json.dumps({"messages": messages}) + "\n")
    print(f"wrote {data}")

    tok_dir = out / "tokenizer"
    if (tok_dir / "tokenizer.json").exists():
        return
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    raw.decoder = decoders.ByteLevel()

    def corpus():
        with open(data, encoding="utf-8") as f:
            for line in f:
                for m in json.loads(line)["messages"]:
                    yield m["content"]
    trainer = trainers.BpeTrainer(
        vocab_size=49152, special_tokens=specials, min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator(corpus(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<|im_start|>", eos_token="<|im_end|>",
        pad_token="<|im_end|>", unk_token="<|endoftext|>")
    tok.chat_template = TEMPLATE
    tok.save_pretrained(str(tok_dir))
    eos = raw.token_to_id("<|im_end|>")
    (tok_dir / "generation_config.json").write_text(json.dumps({"eos_token_id": eos}))
    print(f"wrote {tok_dir} ({raw.get_vocab_size()} tokens)")


if __name__ == "__main__":
    main()
