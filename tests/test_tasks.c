// Pieces of the evaluation tasks that the lm-eval goldens cannot reach with a random model: GSM8K's answer
// extraction and exact match, against what Python's re gives for lm-eval's own patterns (the expected values
// below were computed with lm-eval's filter and metric code paths reproduced in Python, see the comment).
#include <stdlib.h>
#include <string.h>

#include "../search/pn_tasks.h"
#include "pn_test.h"

int main(void) {
    // (response, target, strict, flexible, exact_match strict, exact_match flexible): Python's
    // re.findall(r"#### (\-?[0-9\.\,]+)", r)[0] / re.findall(r"(-?[$0-9.,]{2,})|(-?[0-9]+)", r)[-1] (first
    // non-empty group), stripped, "[invalid]" if none; both sides then re.sub(",|\$|(?s).*#### |\.$", "") in
    // turn and lower-cased.
    static const struct { const char *r, *t, *strict, *flex; int es, ef; } cases[] = {
        {" The answer is #### 42.", "so #### 42", "42.", "42.", 1, 1},
        {"So 1,234 dollars", "x\n#### 1234", "[invalid]", "1,234", 0, 1},
        {"$5 and then 7", "#### 7", "[invalid]", "7", 0, 1},
        {"-3.5", "#### -3.5", "[invalid]", "-3.5", 0, 1},
        {"#### $1,000\nQuestion", "#### 1000", "[invalid]", "$1,000", 0, 1},
        {"no number", "#### 3", "[invalid]", "[invalid]", 0, 0},
        {"12 apples. 13.", "#### 13", "[invalid]", "13.", 0, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s, *f;
        int es, ef;
        pn_gsm8k_score(cases[i].r, cases[i].t, &s, &f, &es, &ef);
        CHECK(!strcmp(s, cases[i].strict) && !strcmp(f, cases[i].flex) && es == cases[i].es && ef == cases[i].ef,
              "case %zu: strict '%s' flexible '%s' em %d %d", i, s, f, es, ef);
        free(s), free(f);
    }
    return pn_test_done("tasks");
}
