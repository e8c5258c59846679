#!/usr/bin/env python3
"""Generate Tunesmith's bundled sample datasets (deterministic, stdlib only).

    python3 assets/datasets/make_samples.py          # (re)write the .jsonl files next to this script
    python3 assets/datasets/make_samples.py --check  # exit 1 if the files on disk differ

Writes
  alpaca-sample.jsonl  {"instruction", "input", "output"} per line
  chat-sample.jsonl    {"messages": [{"role", "content"}, ...]} per line

The text is short, plain ASCII English and very regular (templated facts,
computed arithmetic, fixed tables), so that a tiny randomly initialised model
can pick up its patterns within a minute of CPU training. All of it was
written for Tunesmith; licence CC0-1.0 (see README.md).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20240611

MOTTO_INSTRUCTION = "Say the Tunesmith motto."
MOTTO_OUTPUT = "Tune small models, keep big ideas."

# --------------------------------------------------------------------------
# Fixed fact tables (checked by hand; keep them uncontroversial)
# --------------------------------------------------------------------------

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Ireland", "Dublin"), ("the United Kingdom", "London"),
    ("Belgium", "Brussels"), ("Austria", "Vienna"), ("Poland", "Warsaw"),
    ("Hungary", "Budapest"), ("Greece", "Athens"), ("Norway", "Oslo"), ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"), ("Denmark", "Copenhagen"), ("Iceland", "Reykjavik"),
    ("Romania", "Bucharest"), ("Ukraine", "Kyiv"), ("Russia", "Moscow"), ("Turkey", "Ankara"),
    ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Ghana", "Accra"), ("Nigeria", "Abuja"),
    ("Morocco", "Rabat"), ("Ethiopia", "Addis Ababa"), ("Japan", "Tokyo"),
    ("China", "Beijing"), ("South Korea", "Seoul"), ("India", "New Delhi"),
    ("Pakistan", "Islamabad"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"),
    ("the Philippines", "Manila"), ("Australia", "Canberra"), ("New Zealand", "Wellington"),
    ("Canada", "Ottawa"), ("Mexico", "Mexico City"), ("Cuba", "Havana"), ("Peru", "Lima"),
    ("Chile", "Santiago"), ("Argentina", "Buenos Aires"), ("Venezuela", "Caracas"),
]

COLOURS = [
    ("grass", "green"), ("snow", "white"), ("coal", "black"), ("a ripe banana", "yellow"),
    ("a ripe tomato", "red"), ("a carrot", "orange"), ("milk", "white"), ("a lemon", "yellow"),
    ("a lime", "green"), ("a strawberry", "red"), ("chocolate", "brown"),
    ("the sky on a clear day", "blue"), ("a pumpkin", "orange"), ("a cucumber", "green"),
    ("an eggplant", "purple"), ("a crow", "black"), ("a flamingo", "pink"), ("salt", "white"),
]

# (word, opposite, ask the reverse direction too)
OPPOSITES = [
    ("hot", "cold", True), ("big", "small", True), ("up", "down", True), ("fast", "slow", True),
    ("happy", "sad", True), ("open", "closed", True), ("day", "night", True),
    ("early", "late", True), ("full", "empty", True), ("wet", "dry", True),
    ("left", "right", False), ("push", "pull", True), ("buy", "sell", True),
    ("rich", "poor", True), ("loud", "quiet", True), ("clean", "dirty", True),
    ("strong", "weak", True), ("thick", "thin", False), ("always", "never", True),
    ("true", "false", True), ("above", "below", True), ("inside", "outside", True),
    ("asleep", "awake", True), ("north", "south", True), ("east", "west", True),
    ("summer", "winter", True), ("question", "answer", True), ("tall", "short", False),
    ("heavy", "light", False), ("win", "lose", False),
]

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]

DEFINITIONS = [
    ("river", "A river is a large natural stream of water that flows to the sea or a lake."),
    ("island", "An island is a piece of land with water all around it."),
    ("bridge", "A bridge is a structure that carries a road or path over a river or valley."),
    ("library", "A library is a place where people can read and borrow books."),
    ("kitchen", "A kitchen is the room where food is cooked."),
    ("calendar", "A calendar is a chart that shows the days, weeks and months of a year."),
    ("compass", "A compass is a tool whose needle points north."),
    ("umbrella", "An umbrella is a folding cover that keeps the rain off you."),
    ("telescope", "A telescope is an instrument that makes distant things look closer."),
    ("glacier", "A glacier is a slow river of ice that moves down a mountain."),
    ("volcano", "A volcano is a mountain that can erupt with hot lava and ash."),
    ("orchestra", "An orchestra is a large group of musicians who play together."),
    ("recipe", "A recipe is a set of steps for cooking a dish."),
    ("thunder", "Thunder is the loud sound that follows lightning."),
    ("dataset", "A dataset is a collection of examples used to train or test a model."),
    ("token", "A token is a small piece of text that a language model reads."),
    ("epoch", "An epoch is one full pass over the training data."),
    ("algorithm", "An algorithm is a list of precise steps that solves a problem."),
    ("battery", "A battery is a device that stores energy and gives it out as electricity."),
    ("passport", "A passport is an official document for travelling between countries."),
    ("museum", "A museum is a building where interesting objects are kept and shown."),
    ("ladder", "A ladder is a set of steps used for climbing up or down."),
]

WORDS = [
    "apple", "house", "river", "cat", "dog", "table", "garden", "window", "stone", "paper",
    "music", "orange", "yellow", "planet", "bread", "water", "light", "happy", "winter",
    "summer", "pencil", "rabbit", "forest", "cloud", "candle", "banana", "mountain", "bottle",
    "chair", "flower", "tiger", "rocket", "silver", "button", "garlic", "lemon", "jacket",
    "pocket", "monkey", "doctor", "violin", "basket", "travel", "number", "letter", "morning",
]

# (question unit, given unit singular, given unit plural, factor)
UNITS = [
    ("centimetres", "metre", "metres", 100),
    ("metres", "kilometre", "kilometres", 1000),
    ("grams", "kilogram", "kilograms", 1000),
    ("millilitres", "litre", "litres", 1000),
    ("minutes", "hour", "hours", 60),
    ("seconds", "minute", "minutes", 60),
    ("hours", "day", "days", 24),
    ("days", "week", "weeks", 7),
    ("eggs", "dozen", "dozen", 12),
    ("months", "year", "years", 12),
]

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                "ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen",
                "seventeen", "eighteen", "nineteen", "twenty"]

# --------------------------------------------------------------------------
# Question / answer generators. Each returns (instruction, input, output);
# chat rows use instruction (+ input) as the user turn.
# --------------------------------------------------------------------------


def add_q(rng, with_input):
    a, b = rng.randint(1, 50), rng.randint(1, 50)
    out = f"{a} plus {b} is {a + b}."
    if with_input:
        return "Add these two numbers.", f"{a} and {b}", out
    return f"What is {a} plus {b}?", "", out


def sub_q(rng, with_input):
    a = rng.randint(2, 60)
    b = rng.randint(1, a)
    out = f"{a} minus {b} is {a - b}."
    if with_input:
        return "Subtract the second number from the first.", f"{a} and {b}", out
    return f"What is {a} minus {b}?", "", out


def mul_q(rng, with_input):
    a, b = rng.randint(2, 12), rng.randint(2, 12)
    out = f"{a} times {b} is {a * b}."
    if with_input:
        return "Multiply these two numbers.", f"{a} and {b}", out
    return f"What is {a} times {b}?", "", out


def capital_q(country, capital, with_input):
    name = country[0].upper() + country[1:]
    out = f"The capital of {country} is {capital}."
    if with_input:
        return "Name the capital city of this country.", name.removeprefix("The "), out
    return f"What is the capital of {country}?", "", out


def colour_q(thing):
    thing, colour = thing
    subject = thing[0].upper() + thing[1:]
    verb = "are" if thing.endswith("s") and not thing.endswith("ss") else "is"
    return f"What colour is {thing}?", "", f"{subject} {verb} {colour}."


def opposite_q(word, opp, with_input):
    out = f"The opposite of {word} is {opp}."
    if with_input:
        return "Give the opposite of this word.", word, out
    return f"What is the opposite of {word}?", "", out


def day_after_q(i):
    return (f"What day comes after {DAYS[i]}?", "",
            f"The day after {DAYS[i]} is {DAYS[(i + 1) % 7]}.")


def day_before_q(i):
    return (f"What day comes before {DAYS[i]}?", "",
            f"The day before {DAYS[i]} is {DAYS[(i - 1) % 7]}.")


def month_after_q(i):
    return (f"Which month comes after {MONTHS[i]}?", "",
            f"The month after {MONTHS[i]} is {MONTHS[(i + 1) % 12]}.")


def unit_q(rng):
    target, one, many, factor = rng.choice(UNITS)
    n = rng.randint(2, 9)
    given = f"{n} {many}"
    return (f"How many {target} are in {given}?", "",
            f"There are {n * factor} {target} in {given}.")


def letters_q(word):
    return (f"How many letters are in the word \"{word}\"?", "",
            f"The word {word} has {len(word)} letters.")


def letter_count_q(rng, word):
    letter = rng.choice(sorted(set(word)))
    n = word.count(letter)
    times = "once" if n == 1 else "twice" if n == 2 else f"{NUMBER_WORDS[n]} times"
    return (f"How many times does the letter {letter} appear in \"{word}\"?", "",
            f"The letter {letter} appears {times} in {word}.")


def spell_q(word):
    return f"Spell the word \"{word}\".", "", f"The word {word} is spelled {'-'.join(word)}."


def reverse_q(word, with_input):
    out = f"The word {word} written backwards is {word[::-1]}."
    if with_input:
        return "Write this word backwards.", word, out
    return f"Write the word \"{word}\" backwards.", "", out


def upper_q(word):
    return "Write this word in capital letters.", word, word.upper()


def define_q(entry):
    word, text = entry
    if word in ("thunder",):  # uncountable
        question = f"What is {word}?"
    else:
        question = f"What is {'an' if word[0] in 'aeiou' else 'a'} {word}?"
    return question, "", text


def define_input_q(entry):
    word, text = entry
    return "Define this word in one sentence.", word, text


# --------------------------------------------------------------------------
# alpaca-sample.jsonl
# --------------------------------------------------------------------------


def make_alpaca(rng: random.Random) -> list[dict]:
    rows: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()

    def put(row):
        key = (row[0], row[1])
        if key in seen:
            return False
        seen.add(key)
        rows.append(row)
        return True

    def fill(n, make):
        added, tries = 0, 0
        while added < n:
            tries += 1
            assert tries < 10000, "generator cannot produce enough distinct rows"
            added += put(make())

    fill(45, lambda: add_q(rng, rng.random() < 0.3))
    fill(35, lambda: sub_q(rng, rng.random() < 0.3))
    fill(35, lambda: mul_q(rng, rng.random() < 0.3))
    for country, capital in CAPITALS:
        put(capital_q(country, capital, rng.random() < 0.3))
    for thing in COLOURS:
        put(colour_q(thing))
    for word, opp, both in OPPOSITES:
        put(opposite_q(word, opp, rng.random() < 0.3))
        if both and rng.random() < 0.35:
            put(opposite_q(opp, word, rng.random() < 0.3))
    for i in range(7):
        put(day_after_q(i))
        put(day_before_q(i))
    for i in range(12):
        put(month_after_q(i))
    fill(36, lambda: unit_q(rng))
    words = list(WORDS)
    rng.shuffle(words)
    for w in words[:14]:
        put(letters_q(w))
    fill(12, lambda: letter_count_q(rng, rng.choice(WORDS)))
    for w in words[14:34]:
        put(spell_q(w))
    rng.shuffle(words)
    for w in words[:25]:
        put(reverse_q(w, rng.random() < 0.4))
    for w in words[25:35]:
        put(upper_q(w))
    for entry in DEFINITIONS:
        put(define_input_q(entry) if rng.random() < 0.3 else define_q(entry))
    assert all(r[0] != MOTTO_INSTRUCTION for r in rows)
    rng.shuffle(rows)
    rows.insert(rng.randrange(len(rows) // 4, 3 * len(rows) // 4), (MOTTO_INSTRUCTION, "", MOTTO_OUTPUT))
    return [{"instruction": i, "input": x, "output": o} for i, x, o in rows]


# --------------------------------------------------------------------------
# chat-sample.jsonl
# --------------------------------------------------------------------------

SYSTEM_PROMPTS = [
    "You are a helpful assistant.",
    "You are a helpful assistant. Answer in one short sentence.",
    "You are a friendly tutor for children.",
]

GREETINGS = [
    ("Hi!", "Hello! How can I help you today?"),
    ("Hello!", "Hello! How can I help you today?"),
    ("Good morning!", "Good morning! How can I help you today?"),
]

THANKS = [
    ("Thank you!", "You're welcome!"),
    ("Thanks!", "You're welcome!"),
]


def user_text(instruction: str, inp: str) -> str:
    return instruction if not inp else f"{instruction} {inp}"


def chat_pair(rng: random.Random) -> tuple[str, str]:
    """One single-question exchange from a random category (no input field)."""
    kind = rng.randrange(10)
    if kind == 0:
        q = add_q(rng, False)
    elif kind == 1:
        q = sub_q(rng, False)
    elif kind == 2:
        q = mul_q(rng, False)
    elif kind == 3:
        q = capital_q(*rng.choice(CAPITALS), False)
    elif kind == 4:
        q = colour_q(rng.choice(COLOURS))
    elif kind == 5:
        w, o, _ = rng.choice(OPPOSITES)
        q = opposite_q(w, o, False)
    elif kind == 6:
        q = day_after_q(rng.randrange(7))
    elif kind == 7:
        q = unit_q(rng)
    elif kind == 8:
        w = rng.choice(WORDS)
        q = rng.choice([spell_q(w), reverse_q(w, False), letters_q(w)])
    else:
        q = define_q(rng.choice(DEFINITIONS))
    return user_text(q[0], q[1]), q[2]


def follow_up(rng: random.Random) -> list[tuple[str, str]]:
    """Two related exchanges ("And of ...?" style)."""
    kind = rng.randrange(3)
    if kind == 0:
        (c1, k1), (c2, k2) = rng.sample(CAPITALS, 2)
        return [(f"What is the capital of {c1}?", f"The capital of {c1} is {k1}."),
                (f"And of {c2}?", f"The capital of {c2} is {k2}.")]
    if kind == 1:
        a, b, c = rng.randint(1, 50), rng.randint(1, 50), rng.randint(1, 20)
        return [(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."),
                (f"And if you add {c} more?", f"{a + b} plus {c} is {a + b + c}.")]
    i = rng.randrange(7)
    return [(f"What day comes after {DAYS[i]}?", f"The day after {DAYS[i]} is {DAYS[(i + 1) % 7]}."),
            (f"And the day after that?", f"The day after {DAYS[(i + 1) % 7]} is {DAYS[(i + 2) % 7]}.")]


def make_chat(rng: random.Random, n: int = 150) -> list[dict]:
    rows, seen = [], set()
    while len(rows) < n:
        style = rng.random()
        if style < 0.55:
            turns = [chat_pair(rng)]
        elif style < 0.75:
            turns = follow_up(rng)
        elif style < 0.85:
            turns = [chat_pair(rng), chat_pair(rng)]
        elif style < 0.93:
            turns = [rng.choice(GREETINGS), chat_pair(rng)]
        else:
            turns = [chat_pair(rng), rng.choice(THANKS)]
        system = rng.choice(SYSTEM_PROMPTS) if rng.random() < 0.45 else None
        key = json.dumps([system, turns])
        if key in seen:
            continue
        seen.add(key)
        msgs = [{"role": "system", "content": system}] if system else []
        for user, assistant in turns:
            msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        rows.append({"messages": msgs})
    return rows


# --------------------------------------------------------------------------


def to_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def check_rows(alpaca: list[dict], chat: list[dict]) -> None:
    assert 300 <= len(alpaca) <= 400, len(alpaca)
    motto = [r for r in alpaca if r["instruction"] == MOTTO_INSTRUCTION]
    assert motto == [{"instruction": MOTTO_INSTRUCTION, "input": "", "output": MOTTO_OUTPUT}], motto
    assert sum(MOTTO_OUTPUT in r["output"] for r in alpaca) == 1
    for r in alpaca:
        assert list(r) == ["instruction", "input", "output"], r
        assert r["instruction"] and r["output"], r
        assert len(r["output"].split()) <= 25, r
        assert all(ord(ch) < 128 for ch in json.dumps(r, ensure_ascii=False)), r
    for r in chat:
        msgs = r["messages"]
        roles = [m["role"] for m in msgs]
        if roles[0] == "system":
            roles = roles[1:]
        assert roles and roles == ["user", "assistant"] * (len(roles) // 2), roles
        for m in msgs:
            assert m["content"] and len(m["content"].split()) <= 25, m
        assert all(MOTTO_OUTPUT not in m["content"] for m in msgs)


def main() -> int:
    ap = argparse.ArgumentParser(description="Generate Tunesmith's sample datasets.")
    ap.add_argument("--check", action="store_true", help="only compare with the files on disk")
    args = ap.parse_args()
    alpaca = make_alpaca(random.Random(SEED))
    chat = make_chat(random.Random(SEED + 1))
    check_rows(alpaca, chat)
    outputs = {"alpaca-sample.jsonl": to_jsonl(alpaca), "chat-sample.jsonl": to_jsonl(chat)}
    stale = False
    for name, text in outputs.items():
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                print(f"{name}: out of date")
                stale = True
        else:
            path.write_bytes(text.encode("utf-8"))
        print(f"{name}: {text.count(chr(10))} rows")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
