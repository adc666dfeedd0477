"""
Math answers in LaTeX read into sympy objects, for grader.py. Model text is untrusted, so nothing here
runs text as Python (no eval, exec, sympify or parse_expr: sympy's string parsers evaluate Python): a
small recursive-descent parser builds sympy objects directly, refusing deep nesting and numbers too big
to build. grader.py calls it only in its worker processes, each pair under a hard time limit.

    parse(text) -> a sympy expression, or a tagged tuple: ('tuple' | 'set' | 'union', items),
                   ('interval', lo, hi, left_open, right_open), ('eq', lhs - rhs), ('rel', ops, parts)
"""
import re
from fractions import Fraction

import sympy

MAX_DEPTH = 40            # bracket nesting the parser follows
MAX_BITS = 100_000        # largest integer a power, factorial or binomial may build
MAX_EXPONENT = 10_000     # largest numeric exponent, whatever the base


def tag(value):
    """The kind of a parsed value: 'expr' for a sympy expression, else its tuple's tag."""
    return value[0] if isinstance(value, tuple) else "expr"


class ParseError(ValueError):
    """Text that is not an answer latex.py can read; grader.py counts it as "not equal"."""

# -----------------------------------------------------------------------------
# tokens

# one token after optional space; the named group that matched is its kind, tried in this order:
#   num   a decimal, maybe with an exponent: 12, 2.5, .5, 1e-3 (one token, not 1 e - 3)
#   env   \begin{name} or \end{name}: pmatrix, array, bmatrix*
#   cmd   a \command, or \{ \} \| \\ (a row break)
#   word  a function or constant spelt without \ (sqrt, pi, sin), alone: the "ln" of "kiln" is letters
#   sym   one letter
#   op    <=, >=, =< (the same), != or ** before the one-character operators -+*/^_()[]{},=<>!|&:
TOKEN = re.compile(r"""\s*(?:
    (?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<env>\\(?:begin|end)\{[a-zA-Z]*\*?\})
  | (?P<cmd>\\[a-zA-Z]+|\\[{}|\\])
  | (?P<word>(?<![a-zA-Z])(?:sqrt|pi|infinity|infty|inf|arcsin|arccos|arctan|sin|cos|tan|cot|sec|csc|log|ln|exp)(?![a-zA-Z]))
  | (?P<sym>[a-zA-Z])
  | (?P<op><=|>=|=<|!=|\*\*|[-+*/^_()\[\]{},=<>!|&:])
)""", re.X)
# a ratio a:b is a / b; =< is <= (a spelling models use)
OPS = {"\\cdot": "*", "\\times": "*", "\\ast": "*", "**": "^", "\\div": "/", ":": "/", "=<": "<=", "\\le": "<=",
       "\\leq": "<=", "\\leqq": "<=", "\\leqslant": "<=", "\\ge": ">=", "\\geq": ">=", "\\geqq": ">=",
       "\\geqslant": ">=", "\\lt": "<", "\\gt": ">",
       "\\ne": "!=", "\\neq": "!=", "\\cup": "cup", "\\in": "in", "\\pm": "pm", "\\mp": "mp",
       "\\{": "{set", "\\}": "}set", "\\lbrace": "{set", "\\rbrace": "}set", "\\\\": "row", "\\|": "|",
       "\\vert": "|", "\\lvert": "|", "\\rvert": "|", "\\lfloor": "lfloor", "\\rfloor": "rfloor",
       "\\lceil": "lceil", "\\rceil": "rceil"}
CONSTANTS = {"pi": sympy.pi, "infty": sympy.oo, "infinity": sympy.oo, "inf": sympy.oo,
             "emptyset": ("set", []), "varnothing": ("set", [])}
FUNCTIONS = {"sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot, "sec": sympy.sec,
             "csc": sympy.csc, "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
             "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh, "log": sympy.log,
             "ln": sympy.log, "exp": sympy.exp}
GREEK = set("alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta kappa lambda mu nu "
            "xi rho sigma tau phi varphi chi psi omega Gamma Delta Theta Lambda Sigma Phi Omega".split())
BARS = {"|": ("|", sympy.Abs), "lfloor": ("rfloor", sympy.floor), "lceil": ("rceil", sympy.ceiling)}
RELATIONS = ("=", "<", ">", "<=", ">=", "!=", "in")
SIGNS = {"+": 1, "-": -1, "pm": 1, "mp": -1}  # pm and mp are multiplied by the reading's sign


def _tokens(text):
    """(kind, value) pairs; kinds: num, sym, const, func, cmd (frac, sqrt, binom), begin, end, op."""
    out, i, text = [], 0, text.rstrip()
    while i < len(text):
        match = TOKEN.match(text, i)
        if not match:
            raise ParseError(f"cannot read {text[i:i + 10]!r}")
        kind, value, i = match.lastgroup, match[match.lastgroup], match.end()
        name = value.lstrip("\\")
        if kind == "env":
            kind, value = value[1:value.index("{")], value[value.index("{") + 1:-1]
        elif value in OPS:
            kind, value = "op", OPS[value]
        elif kind in ("cmd", "word"):
            kind = ("const" if name in CONSTANTS else "func" if name in FUNCTIONS else
                    "cmd" if name in ("frac", "sqrt", "binom", "sum") else "sym" if name in GREEK else None)
            if kind is None:
                raise ParseError(f"unknown command {value}")
            value = CONSTANTS.get(name, name)
        out.append((kind, value))
    return out

# -----------------------------------------------------------------------------
# parser: tokens to sympy objects and tagged tuples, one method per level of precedence


class Parser:
    """Recursive descent over one answer. Expressions become sympy objects; the rest tagged
    tuples: ('tuple' | 'set' | 'union', items), ('interval', lo, hi, left_open, right_open),
    ('rel', ops, parts). pm_sign is the sign \\pm stands for in this reading."""

    def __init__(self, text, pm_sign=1):
        self.tokens, self.i, self.depth, self.pm_sign = _tokens(text), 0, 0, pm_sign
        self.indices = []  # the index letters of the sums being read: there i is a letter, not sqrt(-1)

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else ("eof", None)

    def next(self):
        token = self.peek()
        self.i += 1
        return token

    def accept(self, op):
        """Step past op when it is the next token; whether it was."""
        found = self.peek() == ("op", op)
        self.i += found
        return found

    def expect(self, op):
        """accept(op), or a ParseError when op is not next."""
        if not self.accept(op):
            raise ParseError(f"expected {op} at token {self.i}")

    def sign(self):
        """The sign of the +, -, \\pm or \\mp about to be read; None when it is something else."""
        kind, value = self.peek()
        if kind != "op" or value not in SIGNS:
            return None
        self.i += 1
        return SIGNS[value] * (self.pm_sign if value in ("pm", "mp") else 1)

    def parse(self):
        """The whole text: one item, or several (x = 1, x = 2) as a set."""
        items = self.items()
        if self.i != len(self.tokens):
            raise ParseError(f"unexpected {self.peek()[1]!r}")
        return items[0] if len(items) == 1 else ("set", items)  # a bare list of solutions

    def items(self):
        """Relations separated by commas."""
        items = [self.relation()]
        while self.accept(","):
            items.append(self.relation())
        return items

    def relation(self):
        """Unions joined by =, <, <=, \\in...: a = b, 1 < x <= 3."""
        parts, ops = [self.union()], []
        while self.peek()[0] == "op" and self.peek()[1] in RELATIONS:
            ops.append(self.next()[1])
            parts.append(self.union())
        return ("rel", ops, parts) if ops else parts[0]

    def union(self):
        """Sums joined by \\cup."""
        items = [self.sum()]
        while self.accept("cup"):
            items.append(self.sum())
        return ("union", items) if len(items) > 1 else items[0]

    def sum(self):
        """Terms joined by +, -, \\pm, \\mp."""
        value = self.term()
        while (sign := self.sign()) is not None:
            value = _add(value, self.term(), sign)
        return value

    def term(self):
        """Factors joined by *, / or nothing (implicit multiplication)."""
        value = self.unary()
        while True:
            if self.accept("*"):
                value = _times(value, self.unary())
            elif self.accept("/"):
                value = _divide(value, self.unary())
            elif self.starts_atom():  # implicit multiplication: 2x, 3\sqrt{2}, (a+5)(b+2), two matrices
                value = _times(value, self.power())
            else:
                return value

    def unary(self):
        """Signs before a power: -x^2 is -(x^2)."""
        total = 1
        while (sign := self.sign()) is not None:  # a loop, not recursion: ------5 is fine
            total *= sign
        value = self.power()
        return value if total == 1 else -_expr(value)

    def power(self):
        """A postfix, maybe ^ a postfix (x^2, 2^{10}, x^-1); a^b^c needs braces."""
        base = self.postfix()
        if not self.accept("^"):
            return base
        exponent = -_expr(self.postfix()) if self.accept("-") else self.postfix()
        return _pow(_expr(base), _expr(exponent))

    def postfix(self):
        """An atom, maybe followed by factorials (5!)."""
        value = self.atom()
        while self.accept("!"):
            n = _expr(value)
            if n.is_number and not (n.is_Integer and 0 <= n <= 5000):
                raise ParseError("factorial of a huge or non-integer number")
            value = sympy.factorial(n)
        return value

    def starts_atom(self):
        """Whether the next token can begin an atom, as after 2 in 2x."""
        kind, value = self.peek()
        return kind in ("num", "sym", "const", "func", "cmd", "begin") or value in ("(", "{", "{set", "lfloor", "lceil")

    def atom(self):
        """read_atom one nesting level deeper, refused past MAX_DEPTH."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("nested too deeply")
        try:
            return self.read_atom()
        finally:
            self.depth -= 1

    def read_atom(self):
        """A number, letter, constant, function, \\frac, \\binom, \\sqrt, matrix, bracket, braces or bars."""
        kind, value = self.next()
        if kind == "num":
            return _number_value(value)
        if kind == "sym":
            if self.accept("_"):
                value = f"{value}_{self.subscript()}"
            constant = value in ("e", "i") and value not in self.indices
            return {"e": sympy.E, "i": sympy.I}[value] if constant else sympy.Symbol(value)
        if kind == "const":
            return value
        if kind == "func":
            return self.function(value)
        if kind == "cmd" and value == "frac":
            return _divide(self.atom(), self.atom())
        if kind == "cmd" and value == "sum":
            return self.sum_of()
        if kind == "cmd" and value == "binom":
            n, k = _expr(self.atom()), _expr(self.atom())
            if n.is_Integer and k.is_Integer and abs(n) > MAX_BITS:
                raise ParseError("binomial too large")
            return sympy.binomial(n, k)
        if kind == "cmd":  # \sqrt{x}, \sqrt[n]{x}
            n = sympy.Integer(2)
            if self.accept("["):
                n = _expr(self.sum())
                self.expect("]")
            return _pow(_expr(self.atom()), 1 / n)
        if kind == "begin":
            return self.matrix(value)
        if value in ("(", "["):
            return self.bracket(value)
        if value in ("{", "{set"):  # {...} groups in LaTeX; \{1, 2\} and plain {1, 2} are sets
            items = [] if self.accept("}set") else self.items()
            if items:
                self.expect("}" if value == "{" else "}set")
            return items[0] if value == "{" and len(items) == 1 else ("set", items)
        if value in BARS:
            close, function = BARS[value]
            inside = _expr(self.sum())
            self.expect(close)
            return function(inside)
        raise ParseError(f"unexpected {value!r}")

    def subscript(self):
        """After _: a number, a letter, or a braced run of them and signs (F_{n-k-1}), as the text of a name."""
        kind, value = self.next()
        if kind in ("num", "sym"):
            return value
        if (kind, value) != ("op", "{"):
            raise ParseError("a subscript is a number, a letter or braced")
        inside = []
        while (token := self.next()) != ("op", "}"):
            if token[0] not in ("num", "sym", "op") or token[1] in ("{", None) or len(inside) > 20:
                raise ParseError("a subscript is numbers, letters and signs")
            inside.append(str(token[1]))
        return "{" + "".join(inside) + "}"

    def sum_of(self):
        """After \\sum: _{k = a}^{b} and the term summed: added up when the bounds are numbers, else left a sum
        (grader.py compares such sums as written, term by term, never at sample points)."""
        self.expect("_")
        bound = self.atom()
        if tag(bound) != "rel" or bound[1] != ["="] or not isinstance(bound[2][0], (sympy.Symbol, type(sympy.I))):
            raise ParseError("a sum needs _{k = a}")
        self.expect("^")
        k, a = bound[2][0], _expr(bound[2][1])
        k = sympy.Symbol("i") if k == sympy.I else k  # \sum_{i=1}: i is the index here, not sqrt(-1)
        self.indices.append(str(k))
        try:
            b, term = _expr(self.atom()), _expr(self.term())
        finally:
            self.indices.pop()
        # \sum_{k=1}^{10} k: a number, the terms added up; not a_k (a name subs cannot reach) or 10^{10^k} (huge)
        if (b - a).is_Integer and 0 <= b - a < 1000 and term.free_symbols <= {k} and \
                not any(p.exp.has(k) for p in term.atoms(sympy.Pow)):
            return sympy.Add(*[term.subs(k, a + j) for j in range(int(b - a) + 1)])
        return sympy.Sum(term, (k, a, b))

    def bracket(self, open_):
        """After ( or [: a group, an interval ([a, b], (a, b], [a, b)) or a tuple."""
        items = self.items()
        kind, close = self.next()
        if kind != "op" or close not in (")", "]"):
            raise ParseError("unclosed bracket")
        if len(items) == 1 and open_ + close in ("()", "[]"):
            return items[0]
        if len(items) == 2 and open_ + close != "()":
            return ("interval", items[0], items[1], open_ == "(", close == ")")
        if len(items) == 1:
            raise ParseError("mismatched brackets")
        return ("tuple", items)  # (1, 2) is a pair, or an open interval when compared with one

    def function(self, name):
        """\\sin x, \\sin^2 x, \\log_2 8, \\ln(x): the argument braced, bracketed or up to the next function."""
        base = power = None
        if name == "log" and self.accept("_"):
            base = _expr(self.atom())
        if self.accept("^"):
            power = _expr(self.postfix())
        if self.peek() in (("op", "("), ("op", "{")):
            arg = _expr(self.atom())
        else:  # \sin 2x is sin(2x); \sin x \cos x is sin(x) cos(x)
            arg = _expr(self.power())
            while self.starts_atom() and self.peek()[0] != "func":
                arg = arg * _expr(self.power())
        value = FUNCTIONS[name](arg) if base is None else sympy.log(arg, base)
        return value if power is None else _pow(value, power)

    def matrix(self, env):
        """After \\begin{env}: rows of & separated sums up to \\end{env}, as tuples."""
        if env == "array" and self.accept("{"):  # skip the column spec, {cc}
            while self.next() not in (("op", "}"), ("eof", None)):
                pass
        rows = []
        while True:
            rows.append([self.sum()])
            while self.accept("&"):
                rows[-1].append(self.sum())
            if not self.accept("row") or self.peek()[0] == "end":
                break
        if self.next() != ("end", env) or len({len(row) for row in rows}) != 1:
            raise ParseError("bad matrix")
        if len(rows[0]) == 1 or len(rows) == 1:  # a vector is the tuple of its entries
            return ("tuple", [x for row in rows for x in row], "matrix")
        return ("tuple", [("tuple", row) for row in rows], "matrix")


def _expr(value):
    """value as a sympy expression; a tuple, set, interval or relation is not one."""
    if isinstance(value, tuple):
        raise ParseError(f"arithmetic on a {value[0]}")
    return value


def _is_matrix(value):
    """Whether value came from a matrix environment (matrix() marks its tuple): only matrices do arithmetic,
    (0, 1) + (2, 3) may be intervals."""
    return isinstance(value, tuple) and value[-1] == "matrix"


def _entries(value, f):
    """f on each entry of value, nested tuples."""
    return ("tuple", [_entries(x, f) for x in value[1]]) if tag(value) == "tuple" else f(_expr(value))


def _entrywise(a, b, f):
    """f on the entries of a and b, nested tuples of one shape."""
    if tag(a) == tag(b) == "tuple" and len(a[1]) == len(b[1]):
        return ("tuple", [_entrywise(x, y, f) for x, y in zip(a[1], b[1])])
    return f(_expr(a), _expr(b))


def _add(a, b, sign=1):
    """a + sign * b; two matrices of one shape add entry by entry."""
    if _is_matrix(a) and _is_matrix(b):
        return (*_entrywise(a, b, lambda x, y: x + sign * y), "matrix")
    return _expr(a) + sign * _expr(b)


def _times(a, b):
    """a * b; a number times a matrix, and the product of two matrices of matching shapes."""
    if _is_matrix(a) and _is_matrix(b):
        rows_a, rows_b = _rows(a), _rows(b)
        if rows_a is None or rows_b is None or len(rows_a[0]) != len(rows_b):
            raise ParseError("a product of matrices whose shapes do not match")
        product = sympy.Matrix(rows_a) * sympy.Matrix(rows_b)
        return ("tuple", [("tuple", list(product.row(i))) for i in range(product.rows)], "matrix")
    if _is_matrix(a) or _is_matrix(b):
        scalar, matrix = (a, b) if _is_matrix(b) else (b, a)
        return (*_entries(matrix, lambda x: _expr(scalar) * x), "matrix")
    return _expr(a) * _expr(b)


def _rows(value):
    """A matrix's rows as lists of expressions; None when value is not a tuple of equal-length tuples."""
    rows = [row[1] if tag(row) == "tuple" else None for row in value[1]]
    if None in rows or len({len(row) for row in rows}) != 1 or any(tag(x) != "expr" for row in rows for x in row):
        return None
    return rows


def _divide(a, b):
    """a / b; by zero is no answer (12:00 and 1:00 are times, not both infinite)."""
    if _expr(b) == 0:
        raise ParseError("division by zero")
    return _expr(a) / b


def _number_value(text):
    """A number token as an exact sympy Rational (0.15 is 3/20), within the size limits."""
    mantissa, _, exponent = text.lower().partition("e")
    if len(mantissa) > 100 or len(exponent) > 4:
        raise ParseError("number too long")
    value = Fraction(mantissa) * Fraction(10) ** int(exponent or 0)
    return sympy.Rational(value.numerator, value.denominator)


def _pow(base, exponent):
    """base**exponent, refusing results too large to build (9^{9^{9^{9}}} would take forever)."""
    if exponent.is_Number:
        if abs(exponent) > MAX_EXPONENT and base not in (0, 1, -1):
            raise ParseError("exponent too large")
        if base.is_Rational and abs(exponent) * max(base.p.bit_length(), base.q.bit_length()) > MAX_BITS:
            raise ParseError("power too large")
    return base ** exponent

# -----------------------------------------------------------------------------
# meaning: what an answer states


def meaning(value):
    """What an answer states: x = 5 states 5, x \\ge 3 states [3, oo), x \\in S states S; a labelled value
    (AB = 4, |AB| = 1, f(x) = 1) states the value, and a chain (x = 5 + 5 + 1 = 11) its last side."""
    if not isinstance(value, tuple):
        return value
    tag = value[0]
    if tag in ("tuple", "set", "union"):
        return (tag, [meaning(item) for item in value[1]])
    if tag == "interval":
        _, lo, hi, left_open, right_open = value
        return ("interval", _expr(lo), _expr(hi), left_open or lo == -sympy.oo, right_open or hi == sympy.oo)
    ops, parts = value[1], value[2]
    if set(ops) == {"="} and all(_is_name(part) for part in parts[:-1]):
        return meaning(parts[-1])  # x = 5, (x, y) = (1, 2), a = b = 3
    if set(ops) == {"="} and (len(parts) > 2 or _is_constant(parts[1]) and (_is_label(parts[0]) or
                                                                          _is_constant(parts[0]))):
        return meaning(parts[-1])  # x = 5 + 5 + 1 = 11, AB = 4, |AB| = 1, 6/8 = 3/4: the last side
    if ops == ["="] and _is_name(parts[1]):
        return meaning(parts[0])  # 2x + 1 = y
    if ops == ["="]:
        return ("eq", _expr(parts[0]) - _expr(parts[1]))
    if ops == ["in"] and _is_name(parts[0]):
        return meaning(parts[1])
    if set(ops) <= {"<", "<="} or set(ops) <= {">", ">="}:
        return _inequality(ops, parts)
    return ("rel", ops, [meaning(part) for part in parts])


def _is_name(value):
    """Whether value is a variable or a tuple of them: the x of x = 5, the (x, y) of (x, y) = (1, 2)."""
    if isinstance(value, tuple):
        return value[0] == "tuple" and all(isinstance(v, sympy.Symbol) for v in value[1])
    return isinstance(value, sympy.Symbol)


def _is_constant(value):
    return not isinstance(value, tuple) and not value.free_symbols


def _is_label(value):
    """Whether value only names a quantity: letters multiplied or divided (AB, f(x) read as f*x, S_1:S) or
    in bars (|AB|), no numbers: the left side of AB = 4."""
    if isinstance(value, tuple) or not value.free_symbols:
        return False
    if isinstance(value, sympy.Abs):
        return _is_label(value.args[0])
    factors = value.args if isinstance(value, sympy.Mul) else (value,)
    return all(isinstance(f, sympy.Symbol) or isinstance(f, sympy.Pow) and isinstance(f.base, sympy.Symbol)
               and f.exp == -1 for f in factors)


def _inequality(ops, parts):
    """x > 3, 3 <= x, 1 < x <= 3, -x > -1, 0 < f(x) < 1 as intervals of their one quantity."""
    if ops[0] in (">", ">="):  # read it the other way round, ascending
        ops, parts = [{">": "<", ">=": "<="}[op] for op in reversed(ops)], parts[::-1]
    if len(parts) == 2 and _is_constant(parts[1]):
        ops, parts = ["<"] + ops, [-sympy.oo] + parts
    elif len(parts) == 2:
        ops, parts = ops + ["<"], parts + [sympy.oo]
    if len(parts) != 3 or not (_is_constant(parts[0]) and _is_constant(parts[2])) or _is_constant(parts[1]):
        raise ParseError("not an inequality in one quantity")
    (lo, lo_open), middle, (hi, hi_open) = (parts[0], ops[0] == "<"), parts[1], (parts[2], ops[1] == "<")
    if not _is_label(middle):  # a x + b between the bounds, one variable x: the bounds of x
        (x,) = middle.free_symbols if len(middle.free_symbols) == 1 else (None,)
        a = sympy.diff(middle, x) if x is not None else 0
        if x is None or a.free_symbols or a == 0 or sympy.expand(middle - a * x).free_symbols:
            raise ParseError("not an inequality in one variable")
        b = sympy.expand(middle - a * x)
        lo, hi = (lo - b) / a, (hi - b) / a
        if a < 0:  # dividing by a negative turns the inequality round
            (lo, lo_open), (hi, hi_open) = (hi, hi_open), (lo, lo_open)
    return meaning(("interval", lo, hi, lo_open, hi_open))

# -----------------------------------------------------------------------------
# the API


def readings(text):
    """parse(text), and for an answer y = 2x + 1 also the equation it is, ('eq', y - 2x - 1), to compare with
    2x - y + 1 = 0: both from one parse."""
    tree = Parser(text).parse()
    value = _with_pm(text, meaning(tree))
    return [value] + [other for other in (_equation(tree), _absolute(tree, value)) if other is not None]


def parse(text):
    """An answer's meaning; with \\pm, both readings merged into one set of solutions."""
    return _with_pm(text, meaning(Parser(text).parse()))


def _equation(tree):
    """('eq', y - rhs) for a parsed name = expression of variables; None for anything else."""
    if tag(tree) != "rel" or tree[1] != ["="] or not isinstance(tree[2][0], sympy.Symbol):
        return None
    rhs = tree[2][1]
    return None if isinstance(rhs, tuple) or _is_constant(rhs) else ("eq", tree[2][0] - rhs)


def _absolute(tree, value):
    """For 1 <= |z| <= 3/2, read as the interval of |z|, also the values of z: [-3/2, -1] U [1, 3/2]; None for
    anything else."""
    if tag(tree) != "rel" or tag(value) != "interval" or not any(
            isinstance(part, sympy.Abs) and isinstance(part.args[0], sympy.Symbol) for part in tree[2]):
        return None
    _, lo, hi, lo_open, hi_open = value
    if not (lo.is_extended_real and hi.is_extended_real) or hi < 0 or hi == 0 and hi_open:
        return None
    if lo < 0 or lo == 0 and not lo_open:  # |z| <= 3 (from 0): one interval round 0
        return ("interval", -hi, hi, hi_open, hi_open)
    return ("union", [("interval", -hi, -lo, hi_open, lo_open), ("interval", lo, hi, lo_open, hi_open)])


def _with_pm(text, value):
    """value, or with \\pm (\\mp) in text, it and the other sign's reading merged into one set of solutions."""
    if "\\pm" not in text and "\\mp" not in text:
        return value
    other = meaning(Parser(text, pm_sign=-1).parse())
    xs = value[1] if tag(value) == "set" else [value]
    ys = other[1] if tag(other) == "set" else [other]
    if len(xs) != len(ys):
        raise ParseError("\\pm readings of different lengths")
    same = [tag(x) == tag(y) and x == y for x, y in zip(xs, ys)]
    return ("set", [z for x, y, s in zip(xs, ys, same) for z in ([x] if s else [x, y])])
