"""Word lists and light morphology shared by the parser backends (no spaCy, no NLTK).

The hand-written lists here cover the shapes world and common caption English. A data-derived
lexicon (``assets/parser/lexicon.json``, written by :mod:`scenegraph_diff.parsing.train` from FACTUAL
train) extends them when present: observed verb lemmas and words seen as attributes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "COLOURS", "SHAPES", "SHAPE_PLURALS", "SHAPE_PREDICATES", "NUMBERS", "CONTAINERS", "Lexicon", "load_lexicon",
    "lemmatize_verb", "singular_noun", "DEFAULT_LEXICON_PATH",
]

DEFAULT_LEXICON_PATH = Path(__file__).resolve().parent.parent / "assets" / "parser" / "lexicon.json"

COLOURS = frozenset(
    "red green blue yellow purple cyan black white gray grey brown orange pink silver gold golden tan "
    "beige maroon navy teal violet dark light pale bright colorful colourful blond blonde".split()
)
#: The shapes world of SHAPES.md.
SHAPES = frozenset({"circle", "square", "triangle"})
#: Plural shape noun -> its singular ("three red circles": the name stays plural, FACTUAL-style, with the count
#: as a digit attribute; the shapes world itself draws each (colour, shape) at most once).
SHAPE_PLURALS = {s + "s": s for s in sorted(SHAPES)}
SHAPE_COLOURS = frozenset({"red", "green", "blue", "yellow", "purple", "cyan"})
#: Surface predicate -> canonical shapes-world predicate.
SHAPE_PREDICATES = {
    "left of": "left of", "to the left of": "left of", "at the left of": "left of", "on the left of": "left of",
    "right of": "right of", "to the right of": "right of", "at the right of": "right of",
    "on the right of": "right of", "on the right side of": "right of",
    "above": "above", "over": "above", "below": "below", "under": "below", "beneath": "below",
}

#: Container nouns of "X of Y" -> FACTUAL's usual relation: ``"in"`` / ``"on"`` mean ``(Y, in, X)``
#: ("a cup of coffee" -> ``( coffee , in , cup )``), ``"have"`` means ``(X, have, Y)`` ("a bowl of fruit");
#: the majority annotation of each noun in FACTUAL train.
CONTAINERS = {
    **dict.fromkeys("cup glass bottle box basket jar bag mug can carton pitcher jug bucket crate sack barrel tub "
                    "cups glasses bottles boxes baskets jars bags mugs cans cartons".split(), "in"),
    **dict.fromkeys("plate plates platter tray trays dish".split(), "on"),
    **dict.fromkeys("bowl bowls vase vases container containers pot pots pan".split(), "have"),
}

NUMBERS = {
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7", "eight": "8",
    "nine": "9", "ten": "10", "eleven": "11", "twelve": "12", "both": "2", "pair": "2", "couple": "2",
}

DETERMINERS = frozenset(
    "a an the this that these those some its his her their my our your another each every any "
    "several many few lots lot".split()
)
AUX = frozenset("is are was were be been being am 're".split())
CONJ = frozenset({"and", "or", ",", "&", "but", "while"})
RELATIVE = frozenset({"who", "which", "that", "whose", "where"})
THERE = frozenset({"there", "here"})
PRONOUNS = frozenset({"it", "they", "them", "he", "she", "him", "one"})

SIZES = frozenset(
    "large big small little tiny huge giant tall short long wide narrow thick thin tall high low round "
    "square rectangular circular triangular".split()
)
MATERIALS = frozenset(
    "wood wooden metal metallic glass plastic brick stone concrete steel iron leather paper cloth cotton "
    "wool marble ceramic rubber silk denim straw wicker tile cement".split()
)
ADJECTIVES = frozenset(
    "old new young empty full open closed clean dirty wet dry striped spotted plaid checkered floral "
    "shiny dull cloudy sunny clear blurry bare leafy grassy sandy snowy rocky furry fluffy wavy curly "
    "straight smiling happy sad cute pretty beautiful ugly bald bearded lit electric wooden stuffed "
    "parked paved broken cut sliced fried cooked baked dead healthy ripe green-leafed "
    "hazy foggy calm rough smooth soft hard hot cold warm frozen fresh".split()
) | COLOURS | SIZES | MATERIALS

# Single- and multi-word prepositions, longest match first at lookup time.
PREPOSITIONS = sorted(
    [
        tuple(p.split())
        for p in [
            "on top of", "in front of", "next to", "close to", "near to", "to the left of", "to the right of",
            "on the left of", "on the right of", "at the left of", "at the right of", "left of", "right of",
            "on the left side of", "on the right side of", "to the left side of", "to the right side of",
            "on the side of", "in the middle of", "at the top of", "at the bottom of", "on the back of",
            "on the front of", "out of", "inside of", "outside of", "away from", "across from", "in between",
            "in back of", "on", "in", "at", "by", "near", "under", "over", "above", "below", "beneath", "behind",
            "beside", "besides", "between", "across", "along", "around", "against", "inside", "outside", "into",
            "onto", "through", "toward", "towards", "underneath", "with", "without", "of", "from", "up", "down",
            "off", "past", "atop", "among", "within", "beyond", "upon", "alongside", "for", "to", "like",
        ]
    ],
    key=len,
    reverse=True,
)

#: Every word of :data:`PREPOSITIONS`.
PREPOSITION_WORDS = frozenset(w for p in PREPOSITIONS for w in p)

#: Words ending in -ing that are nouns, not verb forms.
ING_NOUNS = frozenset(
    "building ceiling clothing painting railing awning king ring string wing thing evening morning "
    "sibling pudding icing frosting topping stuffing spring swing sling ping lightning siding "
    "writing lettering wedding bedding pudding dressing handwriting landing railing ceiling "
    "sing bring sting ding bling fling cling wring".split()
)
#: Common verbs in caption English (base form), used when a word is not an -ing/-ed form.
VERB_FORMS = {
    "has": "have", "have": "have", "had": "have", "holds": "hold", "wears": "wear", "sits": "sit",
    "stands": "stand", "rides": "ride", "eats": "eat", "looks": "look", "hangs": "hang", "carries": "carry",
    "covers": "cover", "lies": "lie", "lays": "lay", "leans": "lean", "walks": "walk", "plays": "play",
    "contains": "contain", "shows": "show", "grows": "grow", "flies": "fly", "runs": "run", "watches": "watch",
    "made": "make", "held": "hold", "worn": "wear", "sat": "sit", "stood": "stand", "hung": "hang",
    "ridden": "ride", "eaten": "eat", "built": "build", "drawn": "draw", "written": "write", "left": "leave",
    "covered": "cover", "filled": "fill", "parked": "park", "attached": "attach", "mounted": "mount",
    "surrounded": "surround", "topped": "top", "placed": "place", "painted": "paint", "printed": "print",
    "stacked": "stack", "lined": "line", "hanging": "hang", "lying": "lie", "laying": "lay", "dying": "die",
}

_VOWELS = frozenset("aeiou")


def lemmatize_verb(word: str, table: dict[str, str] | None = None) -> str:
    """Base form of an English verb form (``"sitting"`` -> ``"sit"``); a learned ``table`` wins."""
    if table and word in table:
        return table[word]
    if word in VERB_FORMS:
        return VERB_FORMS[word]
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)]
            if len(stem) >= 3 and stem[-1] == stem[-2] and stem[-1] not in "lsz":
                return stem[:-1]
            if stem.endswith("i") and suffix == "ed":
                return stem[:-1] + "y"
            if (
                len(stem) <= 4
                and stem[-1] not in _VOWELS | set("wxy")
                and stem[-2] in _VOWELS
                and stem[-3] not in _VOWELS
            ) or stem.endswith(("v", "c", "z", "iz", "ur", "as")):
                return stem + "e"
            return stem
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


_IRREGULAR_PLURALS = {
    "men": "man", "women": "woman", "people": "person", "persons": "person", "children": "child", "feet": "foot",
    "teeth": "tooth", "mice": "mouse", "geese": "goose", "oxen": "ox", "dice": "die", "buses": "bus",
    "gentlemen": "gentleman", "policemen": "policeman", "firemen": "fireman", "fishermen": "fisherman",
    "leaves": "leaf", "knives": "knife", "wolves": "wolf", "shelves": "shelf", "halves": "half", "loaves": "loaf",
    "scarves": "scarf", "wives": "wife", "calves": "calf", "hooves": "hoof", "thieves": "thief", "lives": "life",
    "elves": "elf", "potatoes": "potato", "tomatoes": "tomato", "heroes": "hero", "mangoes": "mango",
    "volcanoes": "volcano", "echoes": "echo", "cacti": "cactus", "fungi": "fungus", "indices": "index",
}
#: Words ending in -ies whose singular ends in -ie ("cookies" -> "cookie", not "cooky").
_IE_PLURALS = frozenset("cookies movies pies ties brownies zombies hippies selfies lies rookies smoothies goalies "
                        "collies magpies hoodies beanies boogies sweeties".split())
#: Words that are their own plural, or not plural though they end in -s.
_NOT_PLURAL = frozenset("sheep fish deer moose series species aircraft bison salmon trout swiss news pants jeans "
                        "shorts scissors binoculars tennis physics".split())


def singular_noun(name: str) -> str:
    """Singular of an English plural noun phrase: its last word is changed (``"tennis rackets"`` ->
    ``"tennis racket"``); a word that does not look plural is returned as it is.

    Rules, in order: irregular forms (``men``, ``people``, ``leaves``, ``potatoes``, ...); ``-ies`` -> ``-y``
    (``cookies``-like exceptions keep ``-ie``); ``-sses`` / ``-xes`` / ``-ches`` / ``-shes`` / ``-zes`` lose
    ``-es``; other ``-s`` words lose the ``s`` unless they end in ``-ss`` / ``-us`` / ``-is``. A few nouns are
    their own plural (``sheep``). English has more exceptions than this: it is a best effort, tested on
    common caption nouns.
    """
    head, _, word = name.rpartition(" ")
    w = word
    if w in _IRREGULAR_PLURALS:
        w = _IRREGULAR_PLURALS[w]
    elif w in _NOT_PLURAL or len(w) < 3 or not w.endswith("s") or w.endswith(("ss", "us", "is")):
        return name
    elif w.endswith("ies") and len(w) > 4:
        w = w[:-1] if w in _IE_PLURALS else w[:-3] + "y"
    elif w.endswith(("sses", "xes", "ches", "shes", "zzes")):
        w = w[:-2]
    else:
        w = w[:-1]
    return f"{head} {w}" if head else w


@dataclass(frozen=True)
class Lexicon:
    """Word knowledge for the rule-based backend.

    Args:
        verb_lemmas: surface verb form -> base form (``"sitting"`` -> ``"sit"``).
        attributes: words that act as attributes (colours, sizes, materials, adjectives).
        attribute_forms: surface attribute -> canonical attribute (``"wood"`` -> ``"wooden"``).
        nouns: words seen as object names (used to tell ``building`` from ``sitting``).
    """

    verb_lemmas: dict[str, str] = field(default_factory=dict)
    attributes: frozenset[str] = ADJECTIVES
    attribute_forms: dict[str, str] = field(default_factory=dict)
    nouns: frozenset[str] = frozenset()

    def is_attribute(self, word: str) -> bool:
        return word in self.attributes or word in NUMBERS or word.isdigit()

    def attribute_label(self, word: str) -> str:
        if word in NUMBERS:
            return NUMBERS[word]
        return self.attribute_forms.get(word, word)

    def is_verb(self, word: str) -> bool:
        if word in self.nouns and word not in self.verb_lemmas:
            return False
        if word in self.verb_lemmas or word in VERB_FORMS:
            return True
        if word in ING_NOUNS:
            return False
        return (word.endswith("ing") and len(word) > 4) or (word.endswith("ed") and len(word) > 4 and word not in self.attributes)


def load_lexicon(path: str | Path | None = None) -> Lexicon:
    """Load the data-derived lexicon JSON (``None`` -> the bundled one); without it, the built-in lists."""
    path = DEFAULT_LEXICON_PATH if path is None else Path(path)
    if not path.is_file():
        return Lexicon()
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    return Lexicon(
        verb_lemmas=dict(d.get("verb_lemmas", {})),
        attributes=ADJECTIVES | frozenset(d.get("attributes", [])),
        attribute_forms=dict(d.get("attribute_forms", {})),
        nouns=frozenset(d.get("nouns", [])),
    )
