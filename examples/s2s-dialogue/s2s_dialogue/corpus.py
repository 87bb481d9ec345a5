"""The café corpus: small made-up dialogues between a customer and a server (written for this package,
free to use), generated from templates with a fixed seed.

Some replies need the context: the closing "that will be X euros" depends on what was ordered turns
earlier, and "yes"/"no" answers on a fixed menu, so a model must read more than the last turn.
Regenerate the shipped files with `python -m s2s_dialogue.corpus`.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

DRINKS = {"tea": 2, "coffee": 3, "latte": 4, "cocoa": 3, "juice": 4, "lemonade": 3}
FOODS = {"croissants": True, "bagels": True, "muffins": False, "scones": True, "soup": False, "salad": True}
DAYS = {"monday": 7, "tuesday": 7, "wednesday": 8, "thursday": 7, "friday": 8, "saturday": 9, "sunday": 10}
SIZES = {"small": 0, "large": 1}
GREETINGS = ["hello", "hi there", "good morning", "hey", "good afternoon"]
FAREWELLS = ["thanks , bye", "thank you , goodbye", "great , thanks", "cheers , bye"]
SPLITS = {"train": (1, 900), "validation": (2, 80), "test": (3, 80)}


def dialogue(rng: random.Random) -> list[str]:
    """One conversation: alternating customer and server turns, customer first."""
    turns = [rng.choice(GREETINGS), "hello ! what can i get you ?"]
    drink, size = rng.choice(sorted(DRINKS)), rng.choice(sorted(SIZES))
    price = DRINKS[drink] + SIZES[size]
    if rng.random() < 0.4:
        turns += [f"how much is a {drink} ?", f"a small {drink} is {DRINKS[drink]} euros , a large one "
                                              f"{DRINKS[drink] + 1} ."]
    turns += [rng.choice([f"i would like a {size} {drink} please", f"a {size} {drink} , please",
                          f"can i have a {size} {drink} ?"]),
              f"one {size} {drink} coming up . anything else ?"]
    if rng.random() < 0.5:
        food = rng.choice(sorted(FOODS))
        turns += [rng.choice([f"do you have {food} ?", f"any {food} today ?"]),
                  f"yes , we have {food} today ." if FOODS[food] else f"sorry , no {food} today ."]
    if rng.random() < 0.3:
        day = rng.choice(sorted(DAYS))
        turns += [f"what time do you open on {day} ?", f"on {day} we open at {DAYS[day]} ."]
    turns += [rng.choice(["no , that is all", "nothing else", "that is all , thanks"]),
              f"that will be {price} euros , please ."]
    turns += [rng.choice(FAREWELLS), "you are welcome , have a nice day !"]
    return [re.sub(r" ([,.?!])", r"\1", turn) for turn in turns]   # written text: no space before punctuation


def make(folder: Path) -> None:
    """data/{train,validation,test}.jsonl: one conversation a line, {"turns": [...]}."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, (seed, count) in SPLITS.items():
        rng = random.Random(seed)
        lines = [json.dumps({"turns": dialogue(rng)}) + "\n" for _ in range(count)]
        (folder / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")


if __name__ == "__main__":
    make(Path(__file__).resolve().parent / "data")
