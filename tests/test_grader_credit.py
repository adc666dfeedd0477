"""grader.py credits what a careful human would (issue 15's categories), and still nothing wrong: per category, pairs
that must grade equal and pairs that must not. Each is (response, gold) as grade() takes them; a response is
written the way models write (prose, several boxes, labels, approximations). tests/test_grader.py's cases stand
beside these, untouched."""
import pytest

from grader import extract_answer, grade_many

EQUAL = {
    "where the answer is": [
        ("We find $x = 3$ and then $y = 7$.", "7"),
        ("Answer \\[ 9 \\]", "9"), ("Answer $ 9 $", "9"), ("Answer $$ 9 $$", "9"), ("Answer \\( 9 \\)", "9"),
        ("Answer \\[ \n 9 \n \\]", "9"), ("So the area is $\\frac{3}{4}$.", "\\frac{3}{4}"),
        ("Final Answer: The largest $n$ is 34.", "34"), ("The answer is: the largest value is 12.", "12"),
        ("The final answer is 3 apples", "3"), ("The answer is $\\frac{1}{2}$ cup.", "\\frac{1}{2}"),
        ("\\boxed{1}, \\boxed{2}", "1, 2"), ("\\boxed{1} and \\boxed{-2}", "\\{1, -2\\}"),
        ("\\boxed{1}\n\\boxed{2}\n\\boxed{3}", "1, 2, 3"), ("$\\boxed{1}$, $\\boxed{2}$", "\\{2, 1\\}"),
        ("\\(\\boxed{1}\\) and \\(\\boxed{-2}\\).", "-2, 1"), ("$$\\text{a regular hexagon}$$", "\\text{a regular hexagon}"),
        ("Thus the sum is $2 + 3 = 5$.", "5"), ("After simplifying we get \\(x = \\sqrt{2}\\).", "\\sqrt{2}"),
        ("We have $d = 2$, hence the perimeter is $8$.", "8"),
        ("First $\\boxed{3}$ is wrong. Then the answer is \\boxed{5}.", "5"),
    ],
    "labelled answers": [
        ("\\boxed{AB=4, CD=5}", "4, 5"), ("\\boxed{|AB|=1}", "1"), ("\\boxed{f(x)=1}", "1"),
        ("\\boxed{S_{MBCN}:S=7:32}", "7:32"), ("\\boxed{p=5,q=2;p=7,q=2}", "(5,2),(7,2)"),
        ("\\boxed{x = 1 \\text{ or } x = 2}", "1, 2"), ("\\boxed{x=1 \\quad x=2}", "1, 2"),
        ("\\boxed{x = 3; x = 4}", "3, 4"), ("\\boxed{a = 2 \\text{ and } b = 3}", "2, 3"),
        ("\\boxed{\\angle ABC = 30}", "30"), ("\\boxed{BC = 2\\sqrt{3}}", "2\\sqrt{3}"),
        ("\\boxed{x_1 = 2, x_2 = 5}", "2, 5"), ("\\boxed{m = -3}", "-3"), ("\\boxed{P(A) = \\frac{1}{4}}", "\\frac14"),
        ("\\boxed{AB:BC = 2:3}", "\\frac{2}{3}"), ("\\boxed{n=4 \\text{ or } n=-1}", "\\{-1, 4\\}"),
        ("\\boxed{(x, y) = (1, 2)}", "(1, 2)"), ("\\boxed{V_{ABC} = 7}", "7"), ("\\boxed{xy = 6}", "6"),
        ("\\boxed{\\theta = \\frac{\\pi}{3}}", "\\frac{\\pi}{3}"),
    ],
    "chains and approximations": [
        ("\\boxed{x = 5+5+1 = 11}", "11"), ("\\boxed{x \\approx 11}", "11"), ("\\boxed{\\frac{6}{8} = \\frac{3}{4}}", "0.75"),
        ("\\boxed{3 \\cdot 4 = 12}", "12"), ("\\boxed{x = 1/3 \\approx 0.33}", "\\frac13"),
        ("\\boxed{2^{10} = 1024}", "1024"), ("\\boxed{A = \\pi r^2 = 9\\pi}", "9\\pi"),
        ("\\boxed{t \\approx 2.5}", "2.5"), ("\\boxed{S = 1 + 2 + 3 = 6}", "6"), ("\\boxed{x = \\sqrt{16} = 4}", "4"),
        ("\\boxed{P = \\frac{2}{8} = \\frac{1}{4}}", "\\frac{1}{4}"), ("\\boxed{V \\simeq 12}", "12"),
        ("\\boxed{d = \\sqrt{9 + 16} = 5}", "5"), ("\\boxed{100 - 37 = 63}", "63"), ("\\boxed{n = 7 \\cdot 8 = 56}", "56"),
        ("\\boxed{x = 2 \\cdot 3 = 6 = 3!}", "6"), ("\\boxed{r = \\frac{10}{2} = 5}", "5"),
        ("\\boxed{y = 4^2 - 1 = 15}", "15"), ("\\boxed{k = 3 + 4 = 7}", "7"), ("\\boxed{m \\approx 0.5}", "\\frac12"),
    ],
    "relations": [
        ("\\boxed{x >= 3}", "x \\ge 3"), ("\\boxed{x \\geq 3}", "[3, \\infty)"), ("\\boxed{x \\gt 2}", "x > 2"),
        ("\\boxed{x \\lt 2}", "(-\\infty, 2)"), ("\\boxed{x =< 3}", "x \\le 3"), ("\\boxed{x != 3}", "x \\neq 3"),
        ("\\boxed{-x > -1}", "x < 1"), ("\\boxed{-2 \\le x \\le 7}", "x \\in [-2, 7]"), ("\\boxed{x \\in [-2, 7]}", "[-2, 7]"),
        ("\\boxed{-2 \\le x \\le 7}", "[-2, 7]"), ("\\boxed{0<f(x)<1}", "(0,1)"), ("\\boxed{2x+1 \\le 7}", "x \\le 3"),
        ("\\boxed{3 < 2x - 1 \\leq 9}", "(2, 5]"), ("\\boxed{-2x > 4}", "x < -2"),
        ("\\boxed{y=-\\frac{1}{2}x+\\frac{3}{4}}", "2x+4y-3=0"), ("\\boxed{y = 2x + 1}", "2x - y + 1 = 0"),
        ("\\boxed{x \\leqslant 5}", "(-\\infty, 5]"), ("\\boxed{x \\geqq 0}", "[0, \\infty)"),
        ("\\boxed{x \\ne 3}", "x != 3"), ("\\boxed{1 \\le |AB| \\le 2}", "[1, 2]"),
    ],
    "notation": [
        ("\\boxed{\\cfrac{1}{3}}", "1/3"), ("\\boxed{\\textnormal{odd}}", "odd"), ("\\boxed{\\mathrm{e}^2}", "e^2"),
        ("\\boxed{\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
        ("\\boxed{\\left[\\begin{array}{cc}1&2\\\\3&4\\end{array}\\right]}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}"),
        ("The matrix is $\\begin{pmatrix}1\\\\2\\end{pmatrix}$.", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
        ("\\boxed{1000,99}", "1000.99"), ("\\boxed{0,111}", "0.111"), ("\\boxed{2,74 $}", "2.74"), ("\\boxed{1,22}", "1.22"),
        ("\\boxed{1,000}", "1000"), ("\\boxed{1,000.99€}", "1000.99"), ("\\boxed{1,000.99m²}", "1000.99"),
        ("\\boxed{\\$1,000.99}", "1000.99"), ("\\boxed{14{,}916}", "14916"), ("\\boxed{28 percent}", "28\\%"),
        ("\\boxed{\\\\frac{1}{2}}", "0.5"), ("\\boxed{5 \\text{ cm}^2}", "5"), ("\\boxed{20 EUR}", "20"),
        ("\\boxed{x_{1}=2,\\quadx_{2}=3}", "2, 3"),
        ("\\boxed{252 \\cdot 6=\\mathbf{1 5 1 2}}", "1512"),  # OlympiadBench's bold answers, digits spaced
    ],
    "loose solution sets": [
        ("\\boxed{(11,7)or(7,11)}", "(7,11), (11,7)"), ("\\boxed{-12;-11;-10}", "\\{-12, -11, -10\\}"),
        ("\\boxed{1; 2; 3}", "1, 2, 3"), ("\\boxed{(1,2) \\text{ and } (2,1)}", "(2,1), (1,2)"),
        ("\\boxed{(0;-2;6),(4;0;0)}", "(4, 0, 0), (0, -2, 6)"), ("\\boxed{x=1 \\text{ or } x=-1}", "\\pm 1"),
        ("\\boxed{2, 3, 3}", "\\{2, 3\\}"), ("\\boxed{(1, 2), (1, 2), (3, 4)}", "(3, 4), (1, 2)"),
        ("\\boxed{-1 \\text{ and } 1}", "\\{1, -1\\}"), ("\\boxed{5 or 6}", "5, 6"), ("\\boxed{\\{3, 4\\}}", "4, 3"),
        ("\\boxed{a=1,b=2;a=3,b=4}", "(1,2),(3,4)"), ("\\boxed{(1,1)and(2,2)}", "(2,2), (1,1)"),
        ("\\boxed{x = 2 \\text{ or } x = 3}", "\\{2, 3\\}"), ("\\boxed{0;1}", "\\{0, 1\\}"),
        ("\\boxed{1, -1, 2}", "2, 1, -1"), ("\\boxed{x \\in \\{1, 2\\}}", "1, 2"), ("\\boxed{(1,0);(0,1)}", "(0,1),(1,0)"),
        ("\\boxed{7 \\text{ or } 9}", "9, 7"), ("\\boxed{(2, 3)or(3, 2)}", "(3, 2), (2, 3)"),
    ],
}

NOT_EQUAL = {
    "where the answer is": [
        ("We find $x = 3$ and then $y = 7$.", "3"), ("Answer $ 9 $", "8"), ("Answer $ \n 9 \n $", "9"),
        ("So Ann has 12 apples now.", "12"), ("Ann has 3 apples and buys 4 more, so she has 7.", "7"),
        ("Final Answer: The largest $n$ is 34.", "35"), ("The answer is: the largest value is 12.", "13"),
        ("\\boxed{1}, \\boxed{2}", "2"), ("\\boxed{1}, \\boxed{2}", "1"), ("\\boxed{1} and \\boxed{-2}", "-2"),
        ("\\boxed{1}, \\boxed{2}, \\boxed{3}, \\boxed{4}", "3"), ("\\boxed{3, 4, 5}", "5"),
        ("\\boxed{15\\frac{39}{40}} or \\boxed{\\frac{639}{40}}", "15"),
        ("We find $x = 3$. Then $y = 7$ and so on.", "3"), ("So the area is $\\frac{3}{4}$.", "\\frac{4}{3}"),
        ("The answer is 3 apples", "4"), ("Thus the sum is $2 + 3 = 5$.", "2"), ("\\boxed{1} papers, \\boxed{2} bins", "1"),
        ("Answer \\( (9+1) \\)", "9"), ("The final answer is $5$. I hope it is correct.", "6"),
    ],
    "labelled answers": [
        ("\\boxed{AB=4, CD=5}", "4"), ("\\boxed{AB=4, CD=5}", "4, 6"), ("\\boxed{|AB|=1}", "2"), ("\\boxed{f(x)=1}", "0"),
        ("\\boxed{S_{MBCN}:S=7:32}", "7:31"), ("\\boxed{p=5,q=2;p=7,q=2}", "(5,2)"), ("\\boxed{p=5,q=2;p=7,q=2}", "(2,5),(2,7)"),
        ("\\boxed{x = 1 \\text{ or } x = 2}", "1"), ("\\boxed{x=1 \\quad x=2}", "12"), ("\\boxed{a = 2 \\text{ and } b = 3}", "5"),
        ("\\boxed{2x = 10}", "10"), ("\\boxed{x + y = 5}", "5"), ("\\boxed{BC = 2\\sqrt{3}}", "2\\sqrt{2}"),
        ("\\boxed{x_1 = 2, x_2 = 5}", "2, 6"), ("\\boxed{m = -3}", "3"), ("\\boxed{(x, y) = (1, 2)}", "(2, 1)"),
        ("\\boxed{g(2) = 7}", "2"), ("\\boxed{AB:BC = 2:3}", "\\frac{3}{2}"), ("\\boxed{\\theta = \\frac{\\pi}{3}}", "\\frac{\\pi}{6}"),
        ("\\boxed{n=4 \\text{ or } n=-1}", "4"),
    ],
    "chains and approximations": [
        ("\\boxed{x = 5+5+1 = 12}", "11"), ("\\boxed{x = 5+5+1 = 11}", "5"), ("\\boxed{x \\approx 11}", "12"),
        ("\\boxed{x = 1/3 \\approx 0.33}", "0.34"), ("\\boxed{2^{10} = 1024}", "2"), ("\\boxed{A = \\pi r^2 = 9\\pi}", "9"),
        ("\\boxed{t \\approx 2.5}", "2.4"), ("\\boxed{3 \\cdot 4 = 12}", "3"), ("\\boxed{S = 1 + 2 + 3 = 6}", "1"),
        ("\\boxed{x = \\sqrt{16} = 4}", "16"), ("\\boxed{d = \\sqrt{9 + 16} = 5}", "25"), ("\\boxed{100 - 37 = 63}", "100"),
        ("\\boxed{n = 7 \\cdot 8 = 56}", "7"), ("\\boxed{r = \\frac{10}{2} = 5}", "10"), ("\\boxed{y = 4^2 - 1 = 15}", "16"),
        ("\\boxed{k = 3 + 4 = 7}", "3"), ("\\boxed{m \\approx 0.5}", "0.6"), ("\\boxed{V \\simeq 12}", "13"),
        ("\\boxed{\\frac{6}{8} = \\frac{3}{4}}", "\\frac{6}{7}"), ("\\boxed{P = \\frac{2}{8} = \\frac{1}{4}}", "2"),
    ],
    "relations": [
        ("\\boxed{x >= 3}", "x > 3"), ("\\boxed{x \\geq 3}", "(3, \\infty)"), ("\\boxed{x \\gt 2}", "x \\ge 2"),
        ("\\boxed{x \\lt 2}", "(-\\infty, 2]"), ("\\boxed{x =< 3}", "x < 3"), ("\\boxed{x != 3}", "x = 3"),
        ("\\boxed{-x > -1}", "x > 1"), ("\\boxed{-2 \\le x \\le 7}", "x \\in (-2, 7]"), ("\\boxed{x \\in [-2, 7]}", "[-2, 8]"),
        ("\\boxed{0<f(x)<1}", "[0,1]"), ("\\boxed{2x+1 \\le 7}", "x \\le 4"), ("\\boxed{3 < 2x - 1 \\leq 9}", "[2, 5]"),
        ("\\boxed{-2x > 4}", "x > -2"), ("\\boxed{y=-\\frac{1}{2}x+\\frac{3}{4}}", "2x+4y-4=0"),
        ("\\boxed{y = 2x + 1}", "2x + y + 1 = 0"), ("\\boxed{x \\leqslant 5}", "(-\\infty, 5)"),
        ("\\boxed{x \\geqq 0}", "(0, \\infty)"), ("\\boxed{x \\ne 3}", "x \\ne 4"), ("\\boxed{1 \\le |AB| \\le 2}", "[1, 3]"),
        ("\\boxed{x^2 < 4}", "(-2, 2]"),
    ],
    "notation": [
        ("\\boxed{\\cfrac{1}{3}}", "1/4"), ("\\boxed{\\textnormal{odd}}", "even"), ("\\boxed{\\mathrm{e}^2}", "e^3"),
        ("\\boxed{\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}}", "\\begin{pmatrix}1&2\\\\4&3\\end{pmatrix}"),
        ("\\boxed{\\left[\\begin{array}{cc}1&2\\\\3&4\\end{array}\\right]}", "\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}"),
        ("\\boxed{1000,99}", "1000"), ("\\boxed{0,111}", "111"), ("\\boxed{1,2}", "1.2"), ("\\boxed{1, 22}", "1.22"),
        ("\\boxed{1,000}", "1"), ("\\boxed{1,000.99€}", "1000.9"), ("\\boxed{1,000.99m²}", "1000"),
        ("\\boxed{14{,}916}", "14"), ("\\boxed{28 percent}", "29\\%"), ("\\boxed{8n^2 + 4n + 1}", "1+4n+8"),
        ("\\boxed{5 \\text{ cm}^2}", "25"), ("\\boxed{12:00}", "1:00"), ("\\boxed{3x}", "3"), ("\\boxed{5x^2}", "5"),
        ("\\boxed{x_{1}=2,\\quadx_{2}=3}", "2, 4"),
        ("\\boxed{\\mathbf{1 5 1 2}}", "10"), ("\\boxed{\\mathbf{1 5} x}", "15"),
    ],
    "loose solution sets": [
        ("\\boxed{(11,7)or(7,11)}", "(7,11)"), ("\\boxed{-12;-11;-10}", "\\{-12, -11\\}"), ("\\boxed{1; 2; 3}", "1, 2, 4"),
        ("\\boxed{(1,2) \\text{ and } (2,1)}", "(1,2)"), ("\\boxed{(0;-2;6),(4;0;0)}", "(4, 0, 0), (0, 2, 6)"),
        ("\\boxed{x=1 \\text{ or } x=-1}", "1"), ("\\boxed{(1, 2), (1, 2), (3, 4)}", "(1, 2), (3, 4), (5, 6)"),
        ("\\boxed{-1 \\text{ and } 1}", "\\{1\\}"), ("\\boxed{5 or 6}", "5"), ("\\boxed{\\{3, 4\\}}", "(3, 4)"),
        ("\\boxed{a=1,b=2;a=3,b=4}", "(1,2),(4,3)"), ("\\boxed{(1,1)and(2,2)}", "(1,2), (2,1)"),
        ("\\boxed{0;1}", "\\{0, 2\\}"), ("\\boxed{1, -1, 2}", "1, -1"), ("\\boxed{x \\in \\{1, 2\\}}", "1, 3"),
        ("\\boxed{(1,0);(0,1)}", "(1,0),(1,0)"), ("\\boxed{7 \\text{ or } 9}", "7"), ("\\boxed{(2, 3)or(3, 2)}", "(2, 3)"),
        ("\\boxed{1, 2, 3, 4, 5}", "3"), ("\\boxed{(1, 2)}", "\\{1, 2\\}"),
    ],
}


def _cases(table):
    return [pytest.param(r, g, id=f"{name}-{i}") for name, cases in table.items() for i, (r, g) in enumerate(cases)]


@pytest.mark.parametrize("category", list(EQUAL))
def test_each_category_has_twenty_cases_each_way(category):
    assert len(EQUAL[category]) >= 20 and len(NOT_EQUAL[category]) >= 20


@pytest.mark.parametrize("response, gold", _cases(EQUAL))
def test_credits(response, gold):
    assert grade_many([(response, gold)]) == [True], (extract_answer(response), extract_answer(gold))


@pytest.mark.parametrize("response, gold", _cases(NOT_EQUAL))
def test_does_not_credit(response, gold):
    assert grade_many([(response, gold)]) == [False], (extract_answer(response), extract_answer(gold))


def test_rounding_only_where_a_benchmark_rounds():
    pairs = [("\\boxed{3.14159}", "3.14"), ("\\boxed{\\pi}", "3.14"), ("\\boxed{0.4612}", "0.46"), ("\\boxed{1.57}", "1.6")]
    assert grade_many(pairs, rounded=True) == [True] * 4  # a benchmark whose answers are rounded by convention
    assert grade_many(pairs, rounded=False) == [False] * 4  # exact answers: equal within rel_tol only
    assert grade_many([("\\boxed{0.46}", "0.46"), ("\\boxed{\\frac{23}{50}}", "0.46")], rounded=False) == [True, True]
    assert grade_many([("\\boxed{0.5}", "0.46")], rounded=True) == [False]  # coarser than the gold is not rounding


# Found with Math-Verify's cases in bench/grader.py, one category each: an answer marked after the boxes, several
# boxes parted by words, matrices in arithmetic, |z| bounds, sums. Graded as grade() grades by default.
MORE_EQUAL = {
    "the last marked answer": [
        ("$\\boxed{200}$ so far. Final Answer: The final answer is $10,455$. I hope it is correct.", "10455"),
        ("Step: \\boxed{3}. Then more work. The answer is 7.", "7"),
        ("\\boxed{1} first. So the final answer is: $x = 2$.", "2"),
        ("The answer is \\boxed{5}.", "5"), ("The answer is $\\boxed{12}$ and nothing else.", "12"),
        ("#### 4\nOn reflection the answer is 6.", "6"),
        ("\\boxed{2} ... The final answer is \"$12 $ and $13 $\".", "12, 13"),
        ("\\boxed{9}. The answer is: see above.", "9"),  # the marker gives no answer: the box stands
        ("Final Answer: The final answer is $14 {, }916$. I hope it is correct.", "14916"),
        ("\\boxed{1} papers and \\boxed{2} bins", "1, 2"),
        ("$\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 1)}$", "(3, 3), (1, 1)"),
        ("\\(y_1 = \\boxed{-2(x - 1)^2 + 5} \\) and \\( y_2 = \\boxed{3(x + 2)^2 - 2} \\)",
         "y_{1}=-2 x^{2}+4 x+3, y_{2}=3 x^{2}+12 x+10"),
        ("\\boxed{4} apples and \\boxed{5} pears", "4, 5"),
        # what follows a late marker counts only when it is a bare answer; other words part boxes into two answers
        ("\\boxed{12}. The answer is 12 because 2 times 6.", "12"),
        ("The answer is \\boxed{5}. Let me double-check that the answer is correct: 5 * 3 = 15.", "5"),
        ("\\boxed{1} \\text{ is wrong; it is } \\boxed{2}", "2"), ("\\boxed{1} x = \\boxed{2}", "2"),
        ("\\boxed{\"ZRUJ\"}", "\"ZRUJ\""),
    ],
    "matrices, bounds and sums": [
        ("The sum is $\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} + \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}$",
         "\\begin{pmatrix}6 & 8 \\\\ 10 & 12\\end{pmatrix}"),
        ("$\\begin{pmatrix}1 & 1 \\\\ 0 & 1\\end{pmatrix} \\begin{pmatrix}1 & 2 \\\\ 0 & 1\\end{pmatrix}$",
         "\\begin{pmatrix}1 & 3 \\\\ 0 & 1\\end{pmatrix}"),
        ("\\boxed{2\\begin{pmatrix}1 & 2\\end{pmatrix}}", "(2, 4)"),
        ("\\boxed{\\begin{pmatrix}1 \\\\ 2\\end{pmatrix} - \\begin{pmatrix}3 \\\\ 5\\end{pmatrix}}", "(-2, -3)"),
        ("\\boxed{\\begin{pmatrix}\\frac{1}{3x^{2/3}}&0\\\\0&1\\end{pmatrix}}",
         "\\begin{pmatrix}\\frac{1}{3\\sqrt[3]{x}^2}&0\\\\0&1\\\\\\end{pmatrix}"),  # a row break before \end
        ("\\boxed{z \\in [-\\frac{3}{2}, -1] \\cup [1, \\frac{3}{2}]}", "1\\leq|z|\\leq \\frac{3}{2}"),
        ("\\boxed{[1, \\frac{3}{2}]}", "1\\leq|z|\\leq \\frac{3}{2}"),  # the bounds of |z| itself
        ("\\boxed{(-3, 3)}", "|x| < 3"), ("\\boxed{(-\\infty, -2] \\cup [2, \\infty)}", "|x| \\ge 2"),
        ("\\boxed{(-1, 0) \\cup (0, 1)}", "0 < |x| < 1"),
        ("\\boxed{F_n = \\sum_{k=0}^{n-1} F_{n-k-1} F_k}", "F_n = \\sum_{k=0}^{n-1} F_k F_{n-k-1}"),
        ("\\boxed{\\sum_{i=1}^{n} 2 a_i}", "\\sum_{i=1}^{n} a_i \\cdot 2"),
        ("\\boxed{1 = \\zzz = x = 0}", "0"), ("\\boxed{0}", "1 = \\zzz = x = 0"),
        ("\\boxed{\\sum_{k=1}^{10} k}", "55"), ("\\boxed{\\sum_{i=1}^{4} i^2}", "30"),
    ],
}
MORE_NOT_EQUAL = {
    "the last marked answer": [
        ("\\boxed{10455}. Final Answer: The final answer is $10,200$.", "10455"),  # the later answer counts
        ("The answer is 7. Checking again: \\boxed{8}.", "7"),
        ("\\boxed{1} \\text{ or } \\boxed{2}", "1, 2"),  # "or": one answer twice, the last one read
        ("\\boxed{1} no no no no no \\boxed{2}", "1, 2"),
        ("\\boxed{1} papers and \\boxed{2} bins", "2"),  # part of the answer is not all of it
        ("\\boxed{(3, 3)} \\text{ for part (a) and } \\boxed{(1, 1)}", "(1, 1)"),
        ("\\boxed{4} apples and \\boxed{5} pears", "5"), ("\\boxed{4} apples and \\boxed{5} pears", "4"),
        ("#### 4\nOn reflection the answer is 6.", "4"), ("\\boxed{2} ... The final answer is \"$12 $\".", "2"),
        ("\\boxed{12}. The answer is 12 because 2 times 6.", "6"),
        ("\\boxed{7}. The final answer is in the box above, Step 2.", "2"),
        ("\\boxed{1} \\text{ not } \\boxed{2}", "1, 2"),
    ],
    "matrices, bounds and sums": [
        ("$\\begin{pmatrix}1 & 2 \\\\ 3 & 4\\end{pmatrix} + \\begin{pmatrix}5 & 6 \\\\ 7 & 8\\end{pmatrix}$",
         "\\begin{pmatrix}6 & 8 \\\\ 10 & 13\\end{pmatrix}"),
        ("$\\begin{pmatrix}1 & 2 \\\\ 0 & 1\\end{pmatrix} \\begin{pmatrix}1 & 1 \\\\ 0 & 1\\end{pmatrix}$",
         "\\begin{pmatrix}1 & 2 \\\\ 0 & 1\\end{pmatrix}"),
        ("\\boxed{\\begin{pmatrix}1 & 2\\end{pmatrix} \\begin{pmatrix}1 & 2\\end{pmatrix}}", "5"),  # no such product
        ("\\boxed{[1, \\frac{3}{2}]}", "1\\leq|z|\\leq 2"),
        ("\\boxed{[-\\frac{3}{2}, -1]}", "1\\leq|z|\\leq \\frac{3}{2}"),
        ("\\boxed{(0, 3)}", "|x| < 3"), ("\\boxed{(-\\infty, -2) \\cup (2, \\infty)}", "|x| \\ge 2"),
        ("\\boxed{(-1, 1)}", "0 < |x| < 1"),
        ("\\boxed{F_n = \\sum_{k=0}^{n} F_k F_{n-k-1}}", "F_n = \\sum_{k=0}^{n-1} F_k F_{n-k-1}"),
        ("\\boxed{\\sum_{i=1}^{n} 3 a_i}", "\\sum_{i=1}^{n} 2 a_i"), ("\\boxed{1}", "1 = \\zzz = x = 0"),
        ("\\boxed{\\sum_{k=1}^{10} k}", "56"),
        ("\\boxed{\\sum_{k=2}^{4} a_k}", "\\sum_{k=1}^{3} a_k"), ("\\boxed{\\sum_{k=1}^{3} a_k}", "3a_k"),
        ("\\boxed{(0,1)+(2,3)}", "(2,4)"),  # (0, 1) and (2, 3) may be intervals: no sum of tuples
        ("\\boxed{(-\\infty, 1) + (2, \\infty)}", "(-\\infty, \\infty)"),
        ("\\boxed{a <= b = 3}", "3"), ("\\boxed{x != 1 = 3}", "3"), ("\\boxed{x =< 1 = 3}", "3"),  # no chains
        ("\\boxed{\\sum_{k=1}^{n} k}", "\\frac{n(n+1)}{2}"),  # a sum to n is compared as written: a miss, never a guess
    ],
}

# Unmarked prose, read for its last number as eval.py reads it (last_number=True); rl.py's reward does not.
LAST_NUMBER_EQUAL = [
    ("the number is not 10 which is 1,000.99€", "1000.99"), ("so the number is 10 which is 1,000.99m²", "1000.99"),
    ("Soucis : 2,74 $ a..", "2.74"),
    ("Therefore, the probability that Alice wins the game is 2/3. <|im_start|>user", "2/3"),
    ("So $d = \\frac{90}{n}$ for each divisor. Therefore, there are 12 such sequences. I hope it is correct.", "12"),
    ("We get $\\frac{\\Delta x'}{\\Delta x} \\geq 2$. Therefore the error increases by 100%.", "100\\%"),
    ("So Kim has 20 cards now.", "20"), ("He has $10 and spends $3, so he has $7 left.", "7"),
    ("We worked on it at length, over many lines,\nbut found nothing: 5", "5"),
]
LAST_NUMBER_NOT_EQUAL = [
    ("Answer $ \n 9 \n $", "9"), ("Answer \\( \n 9 \n \\)", "9"),  # math left open across lines: not read
    ("the number is not 10 which is 1,000.99€", "10"), ("So Kim has 20 cards now, 3 more than Ann.", "20"),
    ("Therefore, the probability is 2/3 and not 3/4.", "2/3"), ("We try $x = 4$ and then 5 more times.", "4"),
    ("So $x = 4$ and 3 is left over.", "4"), ("I do not know.", "5"),
    ("Hence there are 2^{10} ways.", "10"), ("Hence there are 2^{10} ways.", "2"),  # a power is not a number here
]


def test_more_categories_have_cases_each_way():
    assert MORE_EQUAL.keys() == MORE_NOT_EQUAL.keys()
    assert all(len(MORE_EQUAL[k]) >= 10 and len(MORE_NOT_EQUAL[k]) >= 10 for k in MORE_EQUAL)


@pytest.mark.parametrize("response, gold", _cases(MORE_EQUAL))
def test_credits_more(response, gold):
    assert grade_many([(response, gold)]) == [True], (extract_answer(response), extract_answer(gold, prose=False))


@pytest.mark.parametrize("response, gold", _cases(MORE_NOT_EQUAL))
def test_does_not_credit_more(response, gold):
    assert grade_many([(response, gold)]) == [False], (extract_answer(response), extract_answer(gold, prose=False))


def test_last_number_only_where_asked():
    assert grade_many(LAST_NUMBER_EQUAL, last_number=True) == [True] * len(LAST_NUMBER_EQUAL)
    assert grade_many(LAST_NUMBER_NOT_EQUAL, last_number=True) == [False] * len(LAST_NUMBER_NOT_EQUAL)
    # by default (and in rl.py's reward) an unmarked number is no answer; a last math-mode expression still is
    assert grade_many(LAST_NUMBER_EQUAL) == [False] * len(LAST_NUMBER_EQUAL)
    assert grade_many([("So $x = 4$.", "4")]) == grade_many([("So $x = 4$.", "4")], last_number=True) == [True]
    assert extract_answer("So Kim has 20 cards now.") is None
    assert extract_answer("So Kim has 20 cards now.", last_number=True) == "20"
