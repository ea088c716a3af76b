/*
 * verifiers — deterministic reward functions in plain C, no I/O.
 *
 * Used by lua/ (exposed to environments as `envsrv.verify.*`) and by tests and
 * benchmarks directly. Every function here is pure: the same input always gives
 * the same output, nothing is allocated that outlives the call except where a
 * declaration says so, and every input (however long or malformed) returns
 * quickly with "no answer" rather than failing.
 *
 * Numbers are compared exactly, as rationals (GMP): "0.5" equals "1/2", "18.00"
 * equals "18", but "0.33" is not "1/3". There is no float tolerance.
 */
#ifndef ENVSRV_VERIFIERS_H
#define ENVSRV_VERIFIERS_H

#include <stddef.h>

/* Longest canonical value kept, in bytes with the NUL. Values whose canonical
 * form would be longer (absurd exponents, thousands of digits) are rejected
 * as "no number" so that every check stays bounded in time and memory. */
#define VF_VALUE_MAX 512

/* Where in a completion an answer was found, in order of precedence. */
typedef enum vf_answer_source {
    VF_SOURCE_NONE = 0,     /* nothing that parses as a number */
    VF_SOURCE_BOXED,        /* the last \boxed{...} (or \fbox{...}) */
    VF_SOURCE_HASHES,       /* a "#### 42" line (GSM8K's own format) */
    VF_SOURCE_PHRASE,       /* "the answer is", "Answer:", "final answer" ... */
    VF_SOURCE_LAST_NUMBER   /* the last number in the text */
} vf_answer_source;

/* A number found in a text. `value` is its exact canonical form: an integer
 * ("1200", "-3") or a reduced fraction ("1/2", "-7/4"); two numbers are equal
 * exactly when their `value` strings are equal. */
typedef struct vf_number_answer {
    vf_answer_source source;
    size_t start;               /* byte span of the matched number text in the input */
    size_t len;
    char value[VF_VALUE_MAX];   /* canonical value, "" when source is NONE */
} vf_number_answer;

/* Name of a source for reports: "boxed", "hashes", "phrase", "last_number", "none".
 * Returns a static string. */
const char *vf_answer_source_name(vf_answer_source source);

/*
 * Parses one number written the way models and people write them: thousands
 * separators ("1,200", "1{,}200", "1 200" is NOT accepted), currency ("$", "\$"),
 * percent ("12%" is 12, as GSM8K writes it), unicode minus (U+2212), leading '+',
 * decimals (".5", "18.00"), scientific notation ("1.5e3", "2\times10^{3}" is not
 * required), simple fractions ("1/2", "\frac{1}{2}", "\dfrac{1}{2}"), units and
 * words after the number ("18 dollars"). Surrounding whitespace is ignored.
 *
 * Writes the canonical value into `out` (at most `cap` bytes with the NUL).
 * Returns 0 when the whole text is one number (plus the allowed decorations),
 * -1 otherwise (out is then "").
 */
int vf_number_parse(char *out, size_t cap, const char *text, size_t len);

/*
 * Extracts the final numeric answer of a completion, by precedence: the last
 * \boxed{...}, a "####" line, a final-answer phrase, else the last number.
 * Text inside <think>...</think> (and after an unclosed <think>) is ignored.
 * Always returns 0; `out->source` is VF_SOURCE_NONE when there is no number.
 */
int vf_number_extract(vf_number_answer *out, const char *completion, size_t len);

/*
 * Extracts the reference answer from a GSM8K `answer` field: the number after
 * the last "####". Returns 0 on success, -1 when there is no "####" followed by
 * a number (out->source is then NONE).
 */
int vf_gsm8k_reference(vf_number_answer *out, const char *answer, size_t len);

/* Result of scoring one completion against a GSM8K reference. */
typedef struct vf_gsm8k_result {
    double reward;              /* 1.0 when the values are equal, else 0.0 */
    vf_number_answer got;       /* what was extracted from the completion */
    vf_number_answer want;      /* the reference */
} vf_gsm8k_result;

/*
 * Scores a completion against a GSM8K reference `answer` field (or a bare
 * number: when the reference has no "####", the whole text is parsed as one
 * number). Returns 0, or -1 when the reference itself has no number (a data
 * error the caller should report; out->reward is then 0).
 */
int vf_gsm8k_score(vf_gsm8k_result *out, const char *completion, size_t completion_len,
                   const char *reference, size_t reference_len);

/* ---- MATH-grade answer equivalence (verifiers/math_*.c) ------------------------
 *
 * Answers as the MATH dataset and models write them: LaTeX or plain math, exact
 * rationals (GMP), surds, pi, e, complex numbers, intervals and unions (also
 * written as inequalities, "x > 4"), sets, tuples, solution lists (order ignored,
 * \pm expanded), matrices, equations (equal up to a constant factor), text and
 * multiple-choice letters. Exact where both sides are exact numbers; expressions
 * with variables or irrational parts are compared by a seeded numeric identity
 * test (deterministic, no clock, no rand()). A decimal equals an exact value only
 * when it is that value: 0.5 = 1/2, but 0.33 != 1/3 and 3.6055 != \sqrt{13}.
 * "1,000" (and "10,\!080", "1{,}000") is one number, not a list of two.
 * Every input is bounded in length (1,000 bytes per answer), depth and number size,
 * so every call returns in microseconds; malformed LaTeX is "no answer". The
 * functions keep no state and are safe to call from many threads; each call uses
 * about 80 KiB of scratch memory from malloc, freed before it returns.
 */

/* Size of the text fields of vf_math_result, in bytes with the NUL. */
#define VF_MATH_TEXT_MAX 1024

typedef struct vf_math_result {
    double reward;                  /* 1.0 when equal, else 0.0 */
    char got[VF_MATH_TEXT_MAX];     /* answer text extracted from the completion, "" if none */
    char got_norm[VF_MATH_TEXT_MAX];  /* its normalized form, for reports */
    char want_norm[VF_MATH_TEXT_MAX]; /* the reference's normalized form */
    const char *reason;             /* static string: "equal", "not_equal", "no_answer",
                                       "unparsable_answer", "unparsable_reference" */
} vf_math_result;

/*
 * Extracts the final answer of a completion (or of a full MATH solution): the
 * last \boxed{...} or \fbox{...} (nested braces kept), else the text after a
 * final-answer phrase ("final answer is", "the answer is", "Answer:"), else the
 * last $...$ / \(...\) / \[...\] when nothing but punctuation follows it. Text
 * inside <think>...</think> (and after an unclosed <think>) is ignored.
 * Writes the answer text (at most `cap` bytes with the NUL; longer answers count
 * as none) into `out`. Returns 0 when an answer was found, -1 otherwise (out "").
 */
int vf_math_extract(char *out, size_t cap, const char *completion, size_t len);

/*
 * Compares two bare answers (no extraction; a \boxed wrapper is fine). Sets
 * *equal to 1 or 0. Returns 0, or -1 when `a` or `b` is empty, too long or not
 * a parsable answer (*equal is then 1 only when both clean to the same text).
 */
int vf_math_equal(int *equal, const char *a, size_t alen, const char *b, size_t blen);

/*
 * Scores a completion against a reference that is either a bare answer (MATH's
 * `answer` field) or a full solution (its last \boxed{} is used). Fills `out`
 * (caller storage, about 3 KiB). Returns 0, or -1 when the reference has no
 * parsable answer (a data error to report; out->reward is then 0 and out->reason
 * "unparsable_reference") unless the completion's answer is the very same text.
 */
int vf_math_score(vf_math_result *out, const char *completion, size_t clen,
                  const char *reference, size_t rlen);

/* ---- end of MATH section ---------------------------------------------------- */

/* ---- tool calls (verifiers/toolcall.c, schema.c, bfcl.c) -------------------- */
/*
 * Tool calls as models emit them, checked against JSON Schemas and matched
 * against Berkeley Function Calling Leaderboard (BFCL) ground truth. These
 * functions take and return Jansson values; every returned value is a new
 * reference the caller must json_decref().
 */
#include <jansson.h>

/* Longest reason / message written by the functions below, with the NUL. */
#define VF_TOOL_REASON_MAX 256

/* Most calls taken from one completion; more is a parse error. */
#define VF_TOOL_MAX_CALLS 64

/*
 * Finds the tool calls in a completion. Understood, in this order:
 *   - Hermes / Qwen: one or more <tool_call>{"name": ..., "arguments": {...}}</tool_call>
 *     (a missing last </tool_call> is tolerated);
 *   - otherwise the JSON in ```json fences, or the whole text when it starts
 *     with '{' or '[' (after an optional Llama-3 <|python_tag|>), as
 *       a bare call            {"name": ..., "arguments": {...}}
 *       a Llama-3 call         {"name": ..., "parameters": {...}}  (several may be
 *                              separated by ';')
 *       OpenAI tool calls      {"tool_calls": [{"type": "function", "function":
 *                              {"name": ..., "arguments": "<JSON text>"}}]}, a bare
 *                              list of such objects, or an assistant message
 *       a list of any of the above.
 * `arguments` may be an object or a JSON text holding one (OpenAI's form);
 * absent means {}. Text inside <think>...</think> is ignored.
 *
 * On success returns 0 and *out is a new array of {"name": string,
 * "arguments": object} in the order written: empty when the completion holds
 * no tool call at all (plain prose). Returns -1 when something is written as
 * a tool call but is broken (bad JSON, no name, arguments not an object, too
 * many calls); *out is NULL and `reason` holds one line saying what and
 * where ("tool call 2: invalid JSON: '}' expected near end of file"). `reason`
 * may be NULL. Returns -2 on out-of-memory.
 */
int vf_tool_calls_parse(json_t **out, const char *text, size_t len, char *reason, size_t cap);

/*
 * Validates `value` against a JSON Schema (the subset tools use): type (a
 * name or a list of names; "dict" is "object", "float" is "number", "tuple"
 * is "array", "any" accepts anything; an integral real counts as an integer),
 * properties, required, additionalProperties (boolean or schema), items,
 * enum, const, minimum, maximum, exclusiveMinimum, exclusiveMaximum,
 * minLength, maxLength (in UTF-8 characters), minItems, maxItems. Unknown
 * keywords are ignored. An empty object passes as an empty array (values
 * from Lua cannot tell them apart); the BFCL matcher treats them as equal too.
 *
 * Appends one {"path": "$.a.b[2]", "message": "..."} per violation to
 * `violations` (an array the caller owns), at most `max` of them, and returns
 * how many were found (0: valid; the count may exceed `max`). Returns -1 on
 * out-of-memory. Nesting deeper than 64 levels is itself a violation.
 */
int vf_schema_validate(json_t *violations, const json_t *value, const json_t *schema,
                       size_t max);

/* Outcome of a BFCL match. `reason` is a static string:
 *   "ok", "no_tool_call", "parse_error", "wrong_count", "wrong_function",
 *   "missing_param", "unexpected_param", "wrong_type", "wrong_value",
 *   "missing_optional" (a parameter whose answers do not include "" is absent). */
typedef struct vf_bfcl_result {
    double reward;          /* 1.0 when valid; else 0.0, or the partial credit */
    int valid;              /* every call matched (BFCL's verdict) */
    const char *reason;
    char message[VF_TOOL_REASON_MAX]; /* one line: which call, parameter and values */
    size_t calls_expected;  /* ground-truth calls */
    size_t calls_given;     /* calls found in the completion */
    size_t calls_right;     /* ground-truth calls matched exactly */
    size_t params_right;    /* over the pairs the partial credit counted */
    size_t params_total;
} vf_bfcl_result;

/*
 * Matches parsed calls (as from vf_tool_calls_parse) against BFCL ground truth
 * the way BFCL's AST checker does. `functions` is the record's list of
 * function docs ({"name", "parameters": {"properties", "required"}});
 * `ground_truth` is a list of {func_name: {param: [acceptable values...]}}.
 * Rules: the number of calls must equal the ground truth's; calls pair up in
 * any order (a maximum matching, so parallel calls are order-free); names
 * match exactly or with '.' written as '_'; every required parameter must be
 * present and every given one known; a parameter whose list holds "" may be
 * omitted, any other must be given; types follow the doc (an integer is
 * accepted for a float; a value of the answers' own type is accepted too, as
 * BFCL does); strings compare after BFCL's normalization (lowercase, without
 * spaces and , . / - _ * ^, ' read as "); lists compare element by element in
 * order, dicts key by key against their own lists of acceptable values;
 * numbers compare by value (1 equals 1.0).
 *
 * With `partial` set, an invalid match earns the fraction of parameters right
 * over the best pairing of calls with the same function, divided by the larger
 * of the expected and given call counts (so wrong functions, missing and
 * extra calls all cost). Returns 0 with *out filled, or -1 when the ground
 * truth or function docs are malformed (out->message says how).
 */
int vf_bfcl_match(vf_bfcl_result *out, const json_t *calls, const json_t *functions,
                  const json_t *ground_truth, int partial);

/* Parses the completion's calls (vf_tool_calls_parse) and matches them
 * (vf_bfcl_match). A completion without calls scores 0 with reason
 * "no_tool_call"; broken calls score 0 with "parse_error". Returns as
 * vf_bfcl_match, or -2 on out-of-memory. */
int vf_bfcl_score(vf_bfcl_result *out, const char *completion, size_t len,
                  const json_t *functions, const json_t *ground_truth, int partial);

/*
 * The calls a BFCL record's ground truth implies, as [{"name", "arguments"}]:
 * the reference answer (for tests, benchmarks and SFT data). Each parameter
 * takes its first acceptable value, "" meaning "leave it out" (dict and
 * list-of-dict answers are reduced the same way, recursively), except that a
 * parameter the function doc requires takes its second value when the first
 * is "" (a few BFCL records list "" first for one), and a parameter the doc
 * does not declare is left out (a few records list a nested field as a
 * parameter). Returns a new reference, or NULL when out of memory or the
 * ground truth is not a list of one-key objects.
 */
json_t *vf_bfcl_gold_calls(const json_t *ground_truth, const json_t *functions);

/* ---- end of tool calls section ---------------------------------------------- */

#endif
