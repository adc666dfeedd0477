"""
The final answer in a model's response (or in a gold), and one spelling for it: grader.py's first half, the
part that runs in the caller. extract_answer finds the answer (the last \\boxed{} and the boxes just before it,
"the answer is", GSM8K's ####, the last math-mode span of prose, a short bare answer); normalize writes it one
way (no LaTeX spacing, units, labels, thousands separators; one spelling for fractions and lists); quick decides
the pairs that normalised strings or plain numbers settle, so that only the rest go to sympy in grader.py's
workers. Nothing here runs text as Python: it is regular expressions and fractions.Fraction.
"""
import re
from fractions import Fraction

MAX_ANSWER = 1000         # longer extracted answers are never parsed (real ones are < 300 chars)

# -----------------------------------------------------------------------------
# answers: the final answer in a response or a gold

# "the answer is", "the answer is:", "Final answer:" and the space after, any case: the answer follows
ANSWER_IS = re.compile(r"(?:final answer|the answer)\s*(?:is\s*:?|:)\s*", re.I)
# a word of 3+ letters, not the name of a \command: text with more than 3 is prose, not a bare answer
PROSE_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")
MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
# a math-mode span, its content the group that matched: $$...$$ and \[...\] may span lines, $...$ and \(...\)
# may not (a lone $ in prose must not swallow the rest of the text); \$ inside is a dollar sign, not an end
MATH_SPAN = re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<!\\)\$((?:[^$\n]|\\\$)+?)(?<!\\)\$"
                       r"|\\\(([^\n]+?)\\\)|\\\[(.+?)\\\]", re.S)
# what may stand between \boxed{}es that are one answer: space, $ \( \) \quad, then at most one joint (a comma, a
# semicolon, "and", "papers and", \text{ and }, \text{ for part (a) and }) and maybe a label after it (y_2 =). Not
# "or" (\boxed{15\frac{39}{40}} or \boxed{\frac{639}{40}} gives one answer twice), nor other words or \text{}
GAP_SPACE = r"(?:[\s$]|\\[()\[\]]|\\q?quad)*"
GAP_JOINT = r"(?:[,;]|\band|\b[a-zA-Z]{1,12}\s+and|\\text\{\s*(?:for\s+part\s+\(?\w\)?\s+)?and\s*\})"
GAP_LABEL = r"(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\{?\w+\}?)?\s*="
BOX_GAP = re.compile(rf"{GAP_SPACE}(?:{GAP_JOINT}{GAP_SPACE}(?:{GAP_LABEL}{GAP_SPACE})?)?")
# a number in prose (the 34 of "the largest n is 34"; last_number: the last number of unmarked prose)
# (1,000.99, 2,74 with a decimal comma, 2/3, 100%); a unit may follow (5cm); not a digit inside a word (x2, 1e5)
# nor a power's base or exponent (2^{10})
PROSE_NUMBER = re.compile(r"(?<![\w.,/^{])[-+]?\d+(?:,\d{3})*(?:[.,]\d+)?(?:/\d+)?%?(?![\d.,/]?\d)(?![a-zA-Z]*\d|\^)")
# a math delimiter no span closed ($ then no amount, \( or \[): the text after it is not prose to read numbers in
OPEN_MATH = re.compile(r"(?<!\\)\$(?![\d$])|\\[(\[]")
BOXES = 20                # the most \boxed{} answers read backwards from the last one
NOT_PROSE = {"and", "or", "sqrt", "pi", "infinity", "infty", "inf", "arcsin", "arccos", "arctan", "sin", "cos", "tan",
             "cot", "sec", "csc", "log", "exp"}


def extract_answer(text, prose=True, last_number=False):
    """The final answer in text (see candidates); None when there is none."""
    return candidates(text, prose, last_number)[0]


def candidates(text, prose=True, last_number=False):
    """The final answer in text, the last one marked: the last \\boxed{} (or \\fbox{}), with the boxes just
    before it that only a BOX_GAP parts from it (\\boxed{1}, \\boxed{2}: one answer, "1, 2"; so is "\\boxed{1}
    papers and \\boxed{2} bins"); or what follows the last 'the answer is' or 'final answer:' when that comes
    after the last box and the last '####' (in a sentence, its last math-mode expression or number); else the
    rest of the line after '####' (GSM8K); else, in prose (unless prose=False: a gold in prose is its own
    answer), the last math-mode expression or, with last_number, the last number outside math, whichever comes
    last; else all of text when it is itself a short bare answer. None when there is no answer. Returns
    (answer, the whole sentence when the answer was taken out of one, else None): the sentence is a second
    reading, so a gold that is itself a sentence still matches it."""
    if not isinstance(text, str):
        raise TypeError(f"extract_answer expects a str, got {type(text).__name__}")
    box, hashes, marker = _last_box(text, len(text)), text.rfind("####"), None
    for marker in ANSWER_IS.finditer(text, max(box, hashes) + 1):  # only a marker after them both can count
        pass
    if marker:  # "\\boxed{200} ... The final answer is $10,455$": the later answer
        found = _after_marker(text, marker)
        bare = found[1] is None and found[0] is not None and not _is_prose(found[0])
        if bare or (box < 0 and hashes < 0):  # after a box, only a bare answer ("The answer is 12 because...": the box)
            return found
    if box >= 0:
        return _boxes(text, box), None
    if hashes >= 0:
        return strip_math(text[hashes + 4:].split("\n", 1)[0]) or None, None
    text = text.strip()
    whole = MATH_SPAN.fullmatch(text)  # $$\text{The midpoints form a regular hexagon}$$: all of it
    if whole:
        return next(g for g in whole.groups() if g is not None).strip() or None, None
    tail = text[-20 * MAX_ANSWER:]  # the last math-mode span of prose is near its end
    if prose and _is_prose(tail):
        last = _last_in(tail, last_number)
        if last:
            return last, None
    if len(text) > 300 or "\n" in text or len(PROSE_WORD.findall(text)) > 3:
        return None, None  # prose without a marked answer
    return strip_math(text) or None, None


def _is_prose(text):
    """Whether text has words outside its math, besides "and"/"or" (they join answers) and the functions and
    constants an answer spells without a backslash (sqrt(3), 2 pi)."""
    outside = MATH_SPAN.sub(" ", text)
    return any(w.lower() not in NOT_PROSE for w in PROSE_WORD.findall(outside))


def _after_marker(text, marker):
    """(answer, sentence) after a 'the answer is' match: the rest of its line, up to the end of the sentence
    (a period, not a decimal point); in a sentence, its last math-mode expression or number."""
    line = text[marker.end():marker.end() + MAX_ANSWER].split("\n", 1)[0]
    sentence = re.split(r"\.(?:\s|$)", line, maxsplit=1)[0]  # "." then space or end
    whole = strip_math(sentence) or None
    value = _last_in(sentence, True) if _is_prose(sentence) else None
    return (value, whole) if value else (whole, None)


def _last_in(text, numbers):
    """The last math-mode expression in prose, or (numbers) its last number outside math, whichever comes last
    ("The largest $n$ is 34" -> 34, "so it increases by 100%." -> 100%); None when it has neither."""
    last = [(m.start(), next(g for g in m.groups() if g is not None)) for m in MATH_SPAN.finditer(text)]
    if numbers:
        outside = MATH_SPAN.sub(lambda m: " " * len(m[0]), text)
        outside = OPEN_MATH.split(outside, maxsplit=1)[0]  # "Answer $ \n 9 \n $": broken math, not prose
        last += [(m.start(), m[0]) for m in PROSE_NUMBER.finditer(outside)]
    return (max(last)[1].strip() or None) if last else None


def _last_box(text, end):
    """Where the last \\boxed, \\fbox or \\framebox before end starts; -1 when there is none."""
    return max(text.rfind("\\boxed", 0, end), text.rfind("\\fbox", 0, end), text.rfind("\\framebox", 0, end))


def _boxes(text, start):
    """The last \\boxed{} answer (from start) and the ones just before it that only a BOX_GAP parts from it,
    joined by commas; None when the last one never closes."""
    answers, end = [], None
    for _ in range(BOXES):
        answer, close = _boxed(text, start)
        if answer is None or end is not None and not BOX_GAP.fullmatch(text[close:end]):
            break
        answers.insert(0, answer)
        end = start
        start = _last_box(text, start)
        if start < 0:
            break
    return ", ".join(answers) or None


def _boxed(text, start):
    """(the argument of the \\boxed-like command at text[start], the index just past it); (None, None) when it
    never closes."""
    i = start + 1
    while i < len(text) and text[i].isalpha():
        i += 1
    rest = text[i:i + MAX_ANSWER + 2]  # an answer longer than that is not one: stop looking
    if not rest.lstrip().startswith("{"):
        match = re.match(r"\s*([^\s$]+)", rest)  # \boxed 5: the next run of characters, not space or $
        return (match.group(1), i + match.end()) if match else (None, None)
    begin = rest.index("{")
    depth, j = 0, begin
    while j < len(rest):
        if rest[j] == "\\":
            j += 2  # \{ and \} are characters, not grouping
            continue
        depth += {"{": 1, "}": -1}.get(rest[j], 0)
        if depth == 0:
            return rest[begin + 1:j].strip() or None, i + j + 1
        j += 1
    return None, None


def strip_math(s):
    """s without surrounding space, a final period, or $...$, \\(...\\), \\[...\\] around it."""
    s = s.strip().rstrip(".").strip()
    for open_, close in MATH_DELIMITERS:
        if s.startswith(open_) and s.endswith(close) and len(s) >= len(open_) + len(close):
            return s[len(open_):len(s) - len(close)].strip().rstrip(".").strip()
    return s

# -----------------------------------------------------------------------------
# cheap checks, in the caller: normalised strings and plain numbers

UNICODE = {"\u2212": "-", "\u2013": "-", "\u00d7": "\\times ", "\u00b7": "\\cdot ", "\u00f7": "\\div ",
           "\u03c0": "\\pi ", "\u221e": "\\infty ", "\u2264": "\\le ", "\u2265": "\\ge ", "\u2260": "\\ne ",
           "\u221a": "\\sqrt", "\u00b0": "^\\circ", "\u222a": "\\cup ", "\u2208": "\\in "}
# the start of a text wrapper: \text, \mbox, \mathrm, \operatorname, ... and the space after (part of patterns)
TEXT = r"\\(?:text|textbf|textit|textrm|textnormal|mbox|mathrm|mathbf|mathit|operatorname|boldsymbol)\s*"
# an optional power of ten after a decimal, its exponent the group: 1e3, 1.5\times10^{3} (part of patterns)
TIMES_TEN = r"(?:(?:e|\\times10\^|\\cdot10\^)\{?([-+]?\d{1,3})\}?)?"
# a whole plain number: a sign, then a decimal (with a power of ten), \frac{a}{b} or a/b, then maybe %
NUMBER = re.compile(r"([-+]?)(?:(\d{1,60}(?:\.\d{0,60})?|\.\d{1,60})" + TIMES_TEN +
                    r"|\\frac\{(\d{1,60})\}\{(\d{1,60})\}|(\d{1,60})/(\d{1,60}))(%?)")
# a decimal with a point; groups: the digits after the point, the power of ten
DECIMAL = re.compile(r"[-+]?\d*\.(\d{1,60})" + TIMES_TEN)
# a word of 3+ lowercase letters (a normalised text answer: "odd", "yes")
WORDS = re.compile(r"[a-z]{3,}")


def normalize(s):
    """One spelling for an answer: no LaTeX spacing, \\left/\\right, units, degrees, $, text
    wrappers or thousands separators; \\dfrac, \\frac12 and .5 written \\frac{1}{2} and 0.5."""
    for a, b in UNICODE.items():
        s = s.replace(a, b)
    quoted = re.fullmatch(r'\s*(\\?")(.*)\1\s*', s, re.S)  # "12 and 13", \"12\": quotes around all of it
    s = quoted[2] if quoted else s
    # \\left, \\frac: a doubled backslash (JSON escaped twice); \\ 3 and the \\ of \\\end stay row breaks
    s = re.sub(r"(?<!\\)\\\\(?=[a-zA-Z])", r"\\", s)
    s = re.sub(r"\s*\{\s*,\s*\}\s*", ",", s)  # 14{,}916, 14 {, }916: a thousands separator in braces
    s = re.sub(r"\\(?:left|right)\s*\.", "", s)  # \left. and \right.: invisible delimiters, dot and all
    s = re.sub(r"\\(?:left|right|[bB]igg?[lr]?)(?![a-zA-Z])", "", s)  # \left, \big, \Biggl...; the bracket stays
    s = re.sub(r",\\!\s*", ",", s)  # 10,\!080: a thousands separator
    s = re.sub(r"\\!|\\displaystyle|\\limits", "", s)  # negative space and layout commands
    # spaces (\, \: \; \  ~) as plain spaces (\quad parts answers: below); in \\, (a row break, a comma) the \, is not one
    s = re.sub(r"(?<!\\)\\[,:; ]|~", " ", s)
    s = re.sub(r"\\(?:angle|measuredangle)\s*", "", s)  # \angle ABC = 30: the angle's name
    s = re.sub(r"\\[dtc](frac|binom)", r"\\\1", s)  # \dfrac, \tfrac, \cfrac, \dbinom, \tbinom: \frac, \binom
    # x \approx 11 states 11, as x = 11 does; x = 1/3 \approx 0.33 states 1/3: the exact value before it
    s = re.sub(r"\s*(?:\\approx|\\simeq|\\thickapprox).*", "", s) if re.search(r"=.*\\(?:approx|simeq)", s) \
        else re.sub(r"\\approx|\\simeq|\\thickapprox", "=", s)
    s = re.sub(r"\^\s*\{?\s*\\circ\s*\}?|\\circ|\\degree", "", s)  # degrees: 30^\circ, 30^{\circ}, 30\degree are 30
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "%").strip()
    s = re.sub(r"[€£¥₹]|\b(?:USD|EUR|GBP)\b", "", s).strip()  # currency, before or after the amount
    s = re.sub(r"(?<=\d)\s*(?:percent(?:age)?|pct)\b", "%", s)  # 28 percent, 28 pct: 28%
    s = re.sub(r"(?<=\d)\s*[a-zA-Z]{1,3}[²³]$", "", s)  # a unit with a ² or ³ (1,000.99m²; 8n^2 is no unit)
    # a unit in a text wrapper after the value (5 \text{ cm}, 864 \mbox{ inches}^2); not \text{e} or
    # \text{i}, which are numbers, and not a wrapper that is the whole answer or all a name is said to be
    s = re.sub(TEXT + r"\{(?!\s*[ei]\s*\})[^{}]*[a-zA-Z][^{}]*\}(?:\^\{?\d\}?)?\s*$",
               lambda m: m[0] if m.string[:m.start()].strip() in ("",) or m.string[:m.start()].rstrip()[-1] == "="
               else "", s)
    s = re.sub(r"\\mathbf\{(\d(?: ?\d)*)\}", lambda m: m[1].replace(" ", ""), s)  # \mathbf{1 5 1 2}: bold 1512 (ARML)
    s = re.sub(TEXT + r"\{([^{}]*)\}", r"\1", s)  # the other text wrappers: their contents
    # x = 1 or x = 2, (1,2)or(2,1), W(x)=1orW(x)=-1: lists
    s = re.sub(r"\s+(?:or|and)\s+|(?<=[)\d])\s*(?:or|and)\s*(?=[(A-Z])", ", ", s)
    # a unit in words at the end, after a digit or a }: 18 dollars, 5 sq. ft, 3 cm^2 (not pi, sqrt, inf...)
    s = re.sub(r"(?<=[\d}])\s+(?:(?!pi\b|sqrt\b|inf)[a-zA-Z]{2,}\b\.?\s*)+(?:\^\d)?$", "", s)
    s = re.sub(r"\s*,?\s*\\q?quad\s*", ", ", s)
    s = re.sub(r"(?:\s*,){2,}\s*", ", ", s).strip(", ")  # ", \quad and \quad" left commas in a row: one  # x=1 \quad x=2 (and \quadx_2): two answers, or a space
    s = re.sub(r"\s+", " ", s).strip().rstrip(".").strip()  # runs of space as one
    parts = [p.strip() for p in _split_top(s, ";")]  # -12; -11; -10 lists solutions; p=5, q=2; p=7, q=2 pairs
    if len(parts) > 1 and all(parts):
        s = ", ".join(f"({p})" if "," in p and p[0] not in "([" else p for p in parts)
    s = s.replace(";", ",")  # (0;-2;6): inside brackets, a semicolon parts coordinates
    s = _last_side(s)
    if re.fullmatch(r"\{[^{}]*\}", s):  # {35 cm, 4}: braces group in LaTeX ({1, 3} is 1, 3; a set is \{1, 3\})
        s = s[1:-1].strip()
    s = _unlabel(s)
    s = re.sub(r"_\{(\w+)\}", r"_\1", s)  # a_{1} as a_1
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)  # \frac12 as \frac{1}{2}
    s = re.sub(r"\\frac\s*(\d)\s*(?=\{)", r"\\frac{\1}", s)  # \frac1{x} as \frac{1}{x}
    s = re.sub(r"\\frac\s*(\{[^{}]*\})\s*(\d)", r"\\frac\1{\2}", s)  # \frac{x}2 as \frac{x}{2}
    s = re.sub(r"\\sqrt\s*(\d)", r"\\sqrt{\1}", s)  # \sqrt2 as \sqrt{2}
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)  # .5 as 0.5; the point of 1.5 stays
    # thousands separated by commas or spaces (1,000,000, 12 345.5, 1,000%): the separators go
    if re.fullmatch(r"[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?%?|[-+]?[1-9]\d{0,2}(?: \d{3})+(?:\.\d+)?%?", s):
        s = s.replace(",", "").replace(" ", "")
    mixed = re.fullmatch(r"(-?)(\d{1,50}) ?\\frac\{(\d{1,50})\}\{(\d{1,50})\}", s)  # a mixed number: 2\frac{1}{3}
    if mixed and int(mixed[3]) < int(mixed[4]):  # 1\frac{4}{5} is 9/5, not 4/5
        s = f"{mixed[1]}\\frac{{{int(mixed[2]) * int(mixed[4]) + int(mixed[3])}}}{{{mixed[4]}}}"
    letter = re.fullmatch(r"\(?([A-E])\)?", s)  # a choice letter, maybe in parentheses
    if letter:
        return letter[1]  # multiple choice: (B) is B
    # a text answer (3+ characters, letters and spaces) compares in lower case
    return s.lower() if re.fullmatch(r"[A-Za-z][A-Za-z ]{2,}", s) else s


def _number(key):
    """(value, is_percent) when key is a plain number (-3, 0.5, 1/2, \\frac{1}{2}, 1e3, 50%)."""
    match = NUMBER.fullmatch(key)
    if not match:
        return None
    sign, decimal, exponent, num, den, num2, den2, percent = match.groups()
    if decimal is not None:
        value = Fraction(decimal) * Fraction(10) ** int(exponent or 0)
    elif int(den or den2) == 0:
        return None
    else:
        value = Fraction(int(num or num2), int(den or den2))
    return (-value if sign == "-" else value), percent == "%"


def _split_top(s, sep):
    """s split at each sep outside brackets and braces."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(s):
        depth += (c in "([{") - (c in ")]}")
        if c == sep and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    return parts + [s[start:]]


def _unlabel(s):
    """x = 5, \\theta = 5, a_1 = 5 state 5: a name, then the answer's only = (not =<, a relation). Kept whole: y =
    2x + 1, a name equal to an expression of variables, which latex.py also reads as the equation it is."""
    match = re.match(r"(?:[a-zA-Z]|\\[a-zA-Z]+)(?:_\w+)? ?= ?(?![<>])(?=[^=]*$)", s)
    if not match:
        return s
    rest = s[match.end():]
    variables = re.search(r"(?<![a-zA-Z\\])[a-z](?![a-zA-Z])", re.sub(r"\\[a-zA-Z]+", " ", rest))
    relation = re.search(r"\\in\b|\\[lg]eq?\b|[<>]", rest)
    return s if variables and not relation else rest


def _last_side(s):
    """A chain, x = 5 + 5 + 1 = 11, states its last side (as latex.meaning reads it): s's text after its last =,
    when s has two or more and no relation (<=, >=, !=, =<) or list (a comma) beside them; else s."""
    sides = _split_top(s, "=")
    if len(sides) < 3 or not all(sides) or "," in s or re.search(r"[<>!]=|=[<>]", s):
        return s
    return sides[-1].strip()


def _decimal_point(key):
    """1000,99 / 0,111 / 2,74 read with a decimal point; a key whose comma must be a thousands separator (1,000)
    or may part a list (1,2) is returned as it is."""
    return key.replace(",", ".") if re.fullmatch(r"[-+]?(?:0,\d+|\d+,(?:\d{2}|\d{4,}))", key) else key


def rounding(key):
    """Half a unit in the last digit of a decimal gold (3.14: 0.005): a value that rounds to the
    gold matches it. 0 for integers (27.0 too), fractions, percents and exact forms."""
    match = DECIMAL.fullmatch(key)
    if not match or not match[1].strip("0"):
        return Fraction(0)
    return Fraction(1, 2) * Fraction(10) ** (int(match[2] or 0) - len(match[1]))


def close(a, b, rel_tol, slack=0):
    """|a - b| within rel_tol of the larger, or within the gold's rounding slack."""
    return abs(a - b) <= max(rel_tol * max(abs(a), abs(b)), slack)


def quick(p, g, rel_tol, rounded=True):
    """True or False when normalised strings or plain numbers decide; None when it takes sympy. rounded: a
    decimal gold also matches a value that rounds to it."""
    kp, kg = p.replace(" ", ""), g.replace(" ", "")
    if kp == kg:
        return True
    if re.fullmatch(r"[A-E]", kg):  # a choice letter: (B), B) or B. followed by the option text match it
        letter = re.match(r"\(?([A-E])(?:[).:\s]|$)", p)  # a letter at the start, alone or before ) . : space
        return bool(letter) and letter[1] == kg
    pn, gn = _number(kp), _number(kg)
    if bool(pn) != bool(gn):  # 1000,99 or 0,111 beside a plain number: a decimal comma, not a list of two
        pn, gn = pn or _number(_decimal_point(p)), gn or _number(_decimal_point(g))  # "1, 22" is a list
    if pn and gn:
        preds = [pn[0], pn[0] / 100] if pn[1] else [pn[0]]  # 50% may be written 50 or 0.5
        golds = [gn[0], gn[0] / 100] if gn[1] else [gn[0]]
        slack = 0 if gn[1] or not rounded else rounding(kg)
        return any(close(x, y, Fraction(rel_tol), slack) for x in preds for y in golds)
    if (pn or WORDS.fullmatch(kp)) and (gn or WORDS.fullmatch(kg)):
        return False  # two different words, or a word and a number
    return None
