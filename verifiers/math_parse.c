/*
 * MATH answers: parsing (cleaned answer text -> vf__mtree; math_clean.c cleans).
 *
 * The parser is a recursive descent over an on-demand lexer, because LaTeX argument rules
 * depend on context: "\frac12" takes single digits where "12" elsewhere is one
 * number. Grammar, loosest first:
 *
 *   list    := item ((',' | ';' | "and" | "or") item)*
 *   item    := union ['=' union] | name '\in' union
 *            | union rel union [rel union]        (rel: < > \le \ge; an interval)
 *   union   := pm ('\cup' pm)*
 *   pm      := sum [('\pm' | '\mp') sum]
 *   sum     := term (('+' | '-') term)*
 *   term    := unary (('*' | '\cdot' | '/' | implicit) unary)*
 *   unary   := ('-' | '+') unary | power
 *   power   := postfix ['^' exponent]
 *   postfix := primary ('!' | '_' base)*
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "verifiers/math_int.h"

/* ------------------------------------------------------------------ helpers */

static size_t skip_spaces(const char *in, size_t len, size_t i)
{
    while (i < len && isspace((unsigned char)in[i]))
        i++;
    return i;
}

/* --------------------------------------------------------------------- lexer */

typedef enum tok {
    T_END, T_NUM, T_LETTER, T_WORD, T_TEXT, T_CMD, T_LP, T_RP, T_LB, T_RB, T_LC, T_RC,
    T_LSET, T_RSET, T_COMMA, T_SEMI, T_PLUS, T_MINUS, T_STAR, T_SLASH, T_CARET, T_UNDER,
    T_BANG, T_PIPE, T_EQ, T_AMP, T_ROWSEP, T_PM, T_MP, T_CUP, T_IN, T_LT, T_LE, T_GT, T_GE,
    T_BAD
} tok;

typedef struct parser {
    vf__mtree *t;
    const char *s;
    size_t n;
    size_t pos;         /* next unread byte */
    /* current token */
    tok k;
    size_t ts, tl;      /* token span (NUM digits, CMD name without '\', WORD letters, TEXT content) */
    size_t tend;        /* byte after the token */
    int depth;
    int failed;
} parser;

/* Words that are function or constant names when written without a backslash. */
static const char *const k_plain_names[] = {
    "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "sqrt", "pi",
    "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh", "infty", "inf", NULL
};

static int is_plain_name(const char *s, size_t len)
{
    for (int k = 0; k_plain_names[k]; k++)
        if (strlen(k_plain_names[k]) == len && memcmp(k_plain_names[k], s, len) == 0)
            return 1;
    return 0;
}

static int is_short_word(const char *s, size_t len)
{
    static const char *const w[] = { "or", "cm", "mm", "km", "ft", "in", "kg", "mi", "hr",
                                     "sq", "yd", NULL };
    for (int k = 0; w[k]; k++)
        if (strlen(w[k]) == len && memcmp(w[k], s, len) == 0)
            return 1;
    return 0;
}

/* Reads the token at p->pos into p->k / ts / tl / tend (does not advance). */
static void peek(parser *p)
{
    size_t i = skip_spaces(p->s, p->n, p->pos);
    const char *s = p->s;
    p->ts = i;
    p->tl = 0;
    if (i >= p->n) {
        p->k = T_END;
        p->tend = i;
        return;
    }
    unsigned char c = (unsigned char)s[i];
    if (isdigit(c) || (c == '.' && i + 1 < p->n && isdigit((unsigned char)s[i + 1]))) {
        size_t j = i;
        while (j < p->n && isdigit((unsigned char)s[j]))
            j++;
        if (j < p->n && s[j] == '.' &&
            ((j + 1 < p->n && isdigit((unsigned char)s[j + 1])) ||
             (j + 1 < p->n && s[j + 1] == '\\' && strncmp(s + j + 1, "\\overline", 9) == 0))) {
            j++;
            while (j < p->n && isdigit((unsigned char)s[j]))
                j++;
        }
        p->k = T_NUM;
        p->tl = j - i;
        p->tend = j;
        return;
    }
    if (isalpha(c)) {
        size_t j = i;
        while (j < p->n && isalpha((unsigned char)s[j]))
            j++;
        size_t wl = j - i;
        if (wl >= 2 && is_plain_name(s + i, wl)) {
            p->k = T_CMD;
            p->tl = wl;
            p->tend = j;
            return;
        }
        if (wl >= 3 || (wl == 2 && is_short_word(s + i, wl))) {
            p->k = T_WORD;
            p->tl = wl;
            p->tend = j;
            return;
        }
        p->k = T_LETTER;
        p->tl = 1;
        p->tend = i + 1;
        return;
    }
    p->tend = i + 1;
    switch (c) {
    case '(': p->k = T_LP; return;
    case ')': p->k = T_RP; return;
    case '[': p->k = T_LB; return;
    case ']': p->k = T_RB; return;
    case '{': p->k = T_LC; return;
    case '}': p->k = T_RC; return;
    case ',': p->k = T_COMMA; return;
    case ';': p->k = T_SEMI; return;
    case '+': p->k = T_PLUS; return;
    case '-': p->k = T_MINUS; return;
    case '*': p->k = T_STAR; return;
    case '/': p->k = T_SLASH; return;
    case '^': p->k = T_CARET; return;
    case '_': p->k = T_UNDER; return;
    case '!': p->k = T_BANG; return;
    case '|': p->k = T_PIPE; return;
    case '=': p->k = T_EQ; return;
    case '&': p->k = T_AMP; return;
    case ':': p->k = T_BAD; return;
    case '<': p->k = T_LT; return;
    case '>': p->k = T_GT; return;
    case '\\': break;
    default: p->k = T_BAD; return;
    }
    /* backslash */
    if (i + 1 >= p->n) {
        p->k = T_BAD;
        return;
    }
    unsigned char d = (unsigned char)s[i + 1];
    p->tend = i + 2;
    if (d == '{') { p->k = T_LSET; return; }
    if (d == '}') { p->k = T_RSET; return; }
    if (d == '\\') { p->k = T_ROWSEP; return; }
    if (d == '|') { p->k = T_PIPE; return; }
    if (!isalpha(d)) {
        p->k = T_BAD;
        return;
    }
    size_t j = i + 1;
    while (j < p->n && isalpha((unsigned char)s[j]))
        j++;
    p->ts = i + 1;
    p->tl = j - (i + 1);
    p->tend = j;
    p->k = T_CMD;
#define IS(name) (p->tl == sizeof(name) - 1 && memcmp(s + p->ts, name, p->tl) == 0)
    if (IS("cdot") || IS("times") || IS("ast"))
        p->k = T_STAR;
    else if (IS("div"))
        p->k = T_SLASH;
    else if (IS("pm"))
        p->k = T_PM;
    else if (IS("mp"))
        p->k = T_MP;
    else if (IS("cup"))
        p->k = T_CUP;
    else if (IS("in"))
        p->k = T_IN;
    else if (IS("leq") || IS("leqslant"))
        p->k = T_LE;
    else if (IS("geq") || IS("geqslant"))
        p->k = T_GE;
    else if (IS("lt"))
        p->k = T_LT;
    else if (IS("gt"))
        p->k = T_GT;
    else if (IS("langle"))
        p->k = T_LP;
    else if (IS("rangle"))
        p->k = T_RP;
    else if (IS("text")) {
        /* \text{...}: the content is the token; nested braces are allowed. */
        size_t k = skip_spaces(s, p->n, j);
        if (k >= p->n || s[k] != '{') {
            p->k = T_BAD;
            return;
        }
        int lvl = 0;
        size_t e = k;
        for (; e < p->n; e++) {
            if (s[e] == '{')
                lvl++;
            else if (s[e] == '}' && --lvl == 0)
                break;
        }
        if (e >= p->n) {
            p->k = T_BAD;
            return;
        }
        p->k = T_TEXT;
        p->ts = k + 1;
        p->tl = e - (k + 1);
        p->tend = e + 1;
    }
#undef IS
}

static void advance(parser *p)
{
    p->pos = p->tend;
    peek(p);
}

static int cmd_is(const parser *p, const char *name)
{
    return p->k == T_CMD && strlen(name) == p->tl && memcmp(p->s + p->ts, name, p->tl) == 0;
}

static int new_node(parser *p, int kind, int a, int b)
{
    vf__mtree *t = p->t;
    if (t->n_nodes >= VF__MATH_MAX_NODES) {
        p->failed = 1;
        return -1;
    }
    vf__mnode *nd = &t->nodes[t->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->kind = (uint8_t)kind;
    nd->a = (int16_t)a;
    nd->b = (int16_t)b;
    nd->next = -1;
    return t->n_nodes++;
}

static uint32_t hash_name(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* ------------------------------------------------------------------- parser */

static int p_list(parser *p);
static int p_sum(parser *p);
static int p_unary(parser *p);
static int p_item(parser *p);

static int fail(parser *p)
{
    p->failed = 1;
    return -1;
}

static int enter(parser *p)
{
    if (++p->depth > VF__MATH_MAX_DEPTH) {
        p->failed = 1;
        return -1;
    }
    return 0;
}

/* A NUM node for the literal in the current token (digits, '.', \overline{d}). */
static int make_number(parser *p)
{
    int nd = new_node(p, VF__M_NUM, -1, -1);
    if (nd < 0)
        return -1;
    vf__mnode *m = &p->t->nodes[nd];
    m->start = (uint16_t)p->ts;
    m->len = (uint16_t)p->tl;
    char buf[64];
    size_t dot = 0;
    for (size_t i = 0; i < p->tl; i++)
        if (p->s[p->ts + i] == '.')
            dot = 1;
    if (dot)
        m->flags |= VF__MF_DECIMAL;
    if (p->tl < sizeof buf) {
        memcpy(buf, p->s + p->ts, p->tl);
        buf[p->tl] = '\0';
        m->val = strtod(buf, NULL);
    } else {
        m->val = NAN; /* long literal: converted from the exact value */
    }
    advance(p);
    /* 0.\overline{3}, 0.1\overline{6} */
    if (dot && cmd_is(p, "overline") && p->ts == (size_t)m->start + m->len + 1) {
        size_t j = p->tend;
        if (j < p->n && p->s[j] == '{') {
            size_t k = j + 1;
            while (k < p->n && isdigit((unsigned char)p->s[k]))
                k++;
            if (k < p->n && p->s[k] == '}' && k > j + 1) {
                m->flags |= VF__MF_REPEAT;
                m->flags &= (uint8_t)~VF__MF_DECIMAL;
                m->rep_start = (uint16_t)(j + 1);
                m->rep_len = (uint16_t)(k - (j + 1));
                m->val = NAN;
                p->pos = k + 1;
                peek(p);
            }
        }
    }
    return nd;
}

/* One LaTeX argument: {list} or, without braces, a single character (digit or
 * letter) or a single command: "\frac12", "\sqrt2", "\frac\pi2". */
static int p_arg(parser *p)
{
    if (p->k == T_LC) {
        advance(p);
        int e = p_list(p);
        if (e < 0 || p->k != T_RC)
            return fail(p);
        advance(p);
        return e;
    }
    if (p->k == T_NUM) {
        /* Only the first digit belongs to the argument. */
        int nd = new_node(p, VF__M_NUM, -1, -1);
        if (nd < 0)
            return -1;
        char c = p->s[p->ts];
        if (!isdigit((unsigned char)c))
            return fail(p);
        p->t->nodes[nd].start = (uint16_t)p->ts;
        p->t->nodes[nd].len = 1;
        p->t->nodes[nd].val = (double)(c - '0');
        p->pos = p->ts + 1;
        peek(p);
        return nd;
    }
    if (p->k == T_LETTER) {
        int nd = new_node(p, VF__M_VAR, -1, -1);
        if (nd < 0)
            return -1;
        char c = p->s[p->ts];
        if (c == 'e')
            p->t->nodes[nd].kind = VF__M_E;
        else if (c == 'i')
            p->t->nodes[nd].kind = VF__M_I;
        else
            p->t->nodes[nd].hash = hash_name(&c, 1);
        p->t->nodes[nd].start = (uint16_t)p->ts;
        p->t->nodes[nd].len = 1;
        advance(p);
        return nd;
    }
    if (p->k == T_WORD) {
        /* "\frac ab" lexes "ab" as one word: take its first letter. */
        int nd = new_node(p, VF__M_VAR, -1, -1);
        if (nd < 0)
            return -1;
        p->t->nodes[nd].hash = hash_name(p->s + p->ts, 1);
        p->t->nodes[nd].start = (uint16_t)p->ts;
        p->t->nodes[nd].len = 1;
        p->pos = p->ts + 1;
        peek(p);
        return nd;
    }
    if (p->k == T_CMD)
        return p_unary(p);
    return fail(p);
}

typedef struct fname {
    const char *name;
    int func;     /* vf__mfunc, or -1 log, -2 ln, -3 sqrt */
} fname;

static const fname k_funcs[] = {
    { "sin", VF__F_SIN }, { "cos", VF__F_COS }, { "tan", VF__F_TAN }, { "cot", VF__F_COT },
    { "sec", VF__F_SEC }, { "csc", VF__F_CSC }, { "arcsin", VF__F_ASIN },
    { "arccos", VF__F_ACOS }, { "arctan", VF__F_ATAN }, { "sinh", VF__F_SINH },
    { "cosh", VF__F_COSH }, { "tanh", VF__F_TANH }, { "exp", VF__F_EXP },
    { "log", -1 }, { "ln", -2 }, { "lg", -4 }, { NULL, 0 }
};

/* The argument of \sin, \log ...: a bracketed group, or "2x" in "\sin 2x" — a
 * product of powers that stops at '+', '-' and relations. */
static int p_func_arg(parser *p)
{
    if (p->k == T_LP || p->k == T_LC || p->k == T_LB)
        return p_unary(p);
    int left = p_unary(p);
    if (left < 0)
        return -1;
    while (!p->failed && (p->k == T_NUM || p->k == T_LETTER) ) {
        int r = p_unary(p);
        if (r < 0)
            return -1;
        left = new_node(p, VF__M_MUL, left, r);
    }
    return left;
}

static int p_function(parser *p, int func)
{
    advance(p);
    int base = -1, power = -1;
    /* \sin^2 x, \log_2 8, \sin^{-1} x */
    for (int k = 0; k < 2; k++) {
        if (p->k == T_UNDER && base < 0 && func <= -1) {
            advance(p);
            base = p_arg(p);
            if (base < 0)
                return -1;
        } else if (p->k == T_CARET && power < 0) {
            advance(p);
            power = p_arg(p);
            if (power < 0)
                return -1;
        }
    }
    int arg = p_func_arg(p);
    if (arg < 0)
        return -1;
    int nd;
    if (power >= 0 && func >= VF__F_SIN && func <= VF__F_TAN) {
        vf__mnode *pw = &p->t->nodes[power];
        if (pw->kind == VF__M_NEG && p->t->nodes[pw->a].kind == VF__M_NUM &&
            p->t->nodes[pw->a].val == 1.0L) {
            func += VF__F_ASIN - VF__F_SIN; /* \sin^{-1} is arcsin */
            power = -1;
        }
    }
    if (func >= 0) {
        nd = new_node(p, VF__M_FUNC, arg, -1);
        if (nd >= 0)
            p->t->nodes[nd].aux = (uint16_t)func;
    } else {
        if (func == -4 && base < 0) {
            base = new_node(p, VF__M_NUM, -1, -1);
            if (base < 0)
                return -1;
            p->t->nodes[base].val = 10.0L;
            p->t->nodes[base].aux = 1; /* synthetic literal: value in val */
        }
        /* \log without a base is the natural log, as MATH uses it. */
        nd = new_node(p, VF__M_LOG, arg, func == -2 ? -1 : base);
    }
    if (nd >= 0 && power >= 0)
        nd = new_node(p, VF__M_POW, nd, power);
    return nd;
}

/* \begin{pmatrix} a & b \\ c & d \end{pmatrix} */
static int p_matrix(parser *p)
{
    size_t j = skip_spaces(p->s, p->n, p->tend);
    static const char *const envs[] = { "{pmatrix}", "{bmatrix}", "{matrix}", "{Bmatrix}",
                                        "{smallmatrix}", NULL };
    size_t el = 0;
    for (int k = 0; envs[k]; k++)
        if (strncmp(p->s + j, envs[k], strlen(envs[k])) == 0)
            el = strlen(envs[k]);
    if (!el)
        return fail(p);
    const char *envname = p->s + j;
    p->pos = j + el;
    peek(p);
    int mat = new_node(p, VF__M_MATRIX, -1, -1);
    if (mat < 0)
        return -1;
    int last_row = -1;
    for (;;) {
        int row = new_node(p, VF__M_ROW, -1, -1);
        if (row < 0)
            return -1;
        int last = -1;
        for (;;) {
            int cell = p_item(p);
            if (cell < 0)
                return -1;
            if (last < 0)
                p->t->nodes[row].a = (int16_t)cell;
            else
                p->t->nodes[last].next = (int16_t)cell;
            last = cell;
            if (p->k != T_AMP)
                break;
            advance(p);
        }
        if (last_row < 0)
            p->t->nodes[mat].a = (int16_t)row;
        else
            p->t->nodes[last_row].next = (int16_t)row;
        last_row = row;
        if (p->k == T_ROWSEP) {
            advance(p);
            if (cmd_is(p, "end"))
                break;
            continue;
        }
        break;
    }
    if (!cmd_is(p, "end"))
        return fail(p);
    j = skip_spaces(p->s, p->n, p->tend);
    if (strncmp(p->s + j, envname, el) != 0)
        return fail(p);
    p->pos = j + el;
    peek(p);
    return mat;
}

/* Greek letters and other names that are variables. */
static int is_greek(const parser *p)
{
    static const char *const g[] = { "alpha", "beta", "gamma", "delta", "epsilon",
        "varepsilon", "zeta", "eta", "theta", "vartheta", "iota", "kappa", "lambda", "mu",
        "nu", "xi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi", "psi",
        "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega",
        "ell", NULL };
    for (int k = 0; g[k]; k++)
        if (cmd_is(p, g[k]))
            return 1;
    return 0;
}

/* Bracketed: ( ), [ ], \{ \}, { }, | |; a comma inside makes a tuple, an
 * interval, or a set. */
static int p_bracket(parser *p)
{
    tok open = p->k;
    advance(p);
    int inner = p_list(p);
    if (inner < 0)
        return -1;
    tok close = p->k;
    vf__mnode *in = &p->t->nodes[inner];
    int is_list = in->kind == VF__M_LIST;
    if (open == T_LSET) {
        if (close != T_RSET)
            return fail(p);
        advance(p);
        int nd = new_node(p, VF__M_SET, -1, -1);
        if (nd < 0)
            return -1;
        p->t->nodes[nd].a = is_list ? p->t->nodes[inner].a : (int16_t)inner;
        return nd;
    }
    if (open == T_LC) {
        if (close != T_RC)
            return fail(p);
        advance(p);
        return inner;
    }
    if (close != T_RP && close != T_RB)
        return fail(p);
    advance(p);
    if (!is_list) {
        if (open == T_LB && close == T_RB)
            return inner; /* [x] as a group */
        if (open != T_LP || close != T_RP)
            return fail(p); /* [3) is not anything */
        return inner;
    }
    int first = in->a;
    int second = p->t->nodes[first].next;
    if (open == T_LP && close == T_RP) {
        int nd = new_node(p, VF__M_TUPLE, -1, -1);
        if (nd >= 0)
            p->t->nodes[nd].a = (int16_t)first;
        return nd;
    }
    if (second < 0 || p->t->nodes[second].next >= 0)
        return fail(p);
    int nd = new_node(p, VF__M_INTERVAL, first, second);
    if (nd < 0)
        return -1;
    p->t->nodes[first].next = -1;
    if (open == T_LB)
        p->t->nodes[nd].flags |= VF__MF_LO_CLOSED;
    if (close == T_RB)
        p->t->nodes[nd].flags |= VF__MF_HI_CLOSED;
    return nd;
}

static int p_primary(parser *p)
{
    if (enter(p) < 0)
        return -1;
    int r = -1;
    switch (p->k) {
    case T_NUM: {
        r = make_number(p);
        if (r < 0)
            break;
        /* Mixed number: 2\frac{1}{4} (only integer over integer, as MATH writes it). */
        vf__mnode *m = &p->t->nodes[r];
        if (!(m->flags & (VF__MF_DECIMAL | VF__MF_REPEAT)) && cmd_is(p, "frac")) {
            size_t save = p->pos;
            parser copy = *p;
            advance(p);
            int num = p_arg(p);
            int den = num >= 0 ? p_arg(p) : -1;
            if (num >= 0 && den >= 0 && p->t->nodes[num].kind == VF__M_NUM &&
                p->t->nodes[den].kind == VF__M_NUM &&
                !(p->t->nodes[num].flags & VF__MF_DECIMAL) &&
                !(p->t->nodes[den].flags & VF__MF_DECIMAL)) {
                int fr = new_node(p, VF__M_DIV, num, den);
                r = new_node(p, VF__M_ADD, r, fr);
            } else {
                int keep = p->t->n_nodes;
                *p = copy;
                p->t->n_nodes = keep;
                p->pos = save;
                peek(p);
            }
        }
        break;
    }
    case T_LETTER: {
        char c = p->s[p->ts];
        size_t at = p->ts;
        advance(p);
        if (c == 'e')
            r = new_node(p, VF__M_E, -1, -1);
        else if (c == 'i')
            r = new_node(p, VF__M_I, -1, -1);
        else {
            r = new_node(p, VF__M_VAR, -1, -1);
            if (r < 0)
                break;
            /* x_1, a_{n}: the subscript is part of the name. */
            size_t end = at + 1;
            if (p->k == T_UNDER) {
                size_t j = skip_spaces(p->s, p->n, p->tend);
                if (j < p->n && p->s[j] == '{') {
                    size_t k = j;
                    while (k < p->n && p->s[k] != '}')
                        k++;
                    if (k >= p->n)
                        return fail(p);
                    end = k + 1;
                } else if (j < p->n && isalnum((unsigned char)p->s[j])) {
                    end = j + 1;
                } else {
                    return fail(p);
                }
                p->pos = end;
                peek(p);
            }
            p->t->nodes[r].hash = hash_name(p->s + at, end - at);
            p->t->nodes[r].start = (uint16_t)at; /* the name, for reports */
            p->t->nodes[r].len = (uint16_t)(end - at);
        }
        break;
    }
    case T_LP: case T_LB: case T_LSET: case T_LC:
        r = p_bracket(p);
        break;
    case T_PIPE: {
        advance(p);
        int inner = p_sum(p);
        if (inner < 0 || p->k != T_PIPE)
            return fail(p);
        advance(p);
        r = new_node(p, VF__M_FUNC, inner, -1);
        if (r >= 0)
            p->t->nodes[r].aux = VF__F_ABS;
        break;
    }
    case T_CMD: {
        if (cmd_is(p, "frac") || cmd_is(p, "over")) {
            advance(p);
            int num = p_arg(p);
            int den = num >= 0 ? p_arg(p) : -1;
            if (den < 0)
                return -1;
            r = new_node(p, VF__M_DIV, num, den);
        } else if (cmd_is(p, "binom") || cmd_is(p, "choose")) {
            advance(p);
            int n = p_arg(p);
            int k = n >= 0 ? p_arg(p) : -1;
            if (k < 0)
                return -1;
            r = new_node(p, VF__M_BINOM, n, k);
        } else if (cmd_is(p, "sqrt")) {
            advance(p);
            int idx = -1;
            if (p->k == T_LB) {
                advance(p);
                idx = p_sum(p);
                if (idx < 0 || p->k != T_RB)
                    return fail(p);
                advance(p);
            }
            int arg = (p->k == T_LP) ? p_unary(p) : p_arg(p);
            if (arg < 0)
                return -1;
            r = new_node(p, VF__M_ROOT, arg, idx);
        } else if (cmd_is(p, "pi")) {
            advance(p);
            r = new_node(p, VF__M_PI, -1, -1);
        } else if (cmd_is(p, "infty") || cmd_is(p, "inf") || cmd_is(p, "infinity")) {
            advance(p);
            r = new_node(p, VF__M_INF, -1, -1);
        } else if (cmd_is(p, "begin")) {
            r = p_matrix(p);
        } else if (cmd_is(p, "lfloor") || cmd_is(p, "lceil")) {
            int fl = cmd_is(p, "lfloor");
            advance(p);
            int inner = p_sum(p);
            if (inner < 0 || !cmd_is(p, fl ? "rfloor" : "rceil"))
                return fail(p);
            advance(p);
            r = new_node(p, VF__M_FUNC, inner, -1);
            if (r >= 0)
                p->t->nodes[r].aux = fl ? VF__F_FLOOR : VF__F_CEIL;
        } else if (cmd_is(p, "operatorname")) {
            /* \operatorname{sin} -> the function */
            size_t j = skip_spaces(p->s, p->n, p->tend);
            if (j >= p->n || p->s[j] != '{')
                return fail(p);
            size_t k = j + 1;
            while (k < p->n && isalpha((unsigned char)p->s[k]))
                k++;
            if (k >= p->n || p->s[k] != '}')
                return fail(p);
            for (int f = 0; k_funcs[f].name; f++) {
                if (strlen(k_funcs[f].name) == k - j - 1 &&
                    memcmp(k_funcs[f].name, p->s + j + 1, k - j - 1) == 0) {
                    /* Re-lex from the name's closing brace as if it were \name. */
                    p->ts = j + 1;
                    p->tl = k - j - 1;
                    p->tend = k + 1;
                    p->k = T_CMD;
                    r = p_function(p, k_funcs[f].func);
                    goto out;
                }
            }
            return fail(p);
        } else if (is_greek(p)) {
            r = new_node(p, VF__M_VAR, -1, -1);
            if (r >= 0) {
                p->t->nodes[r].hash = hash_name(p->s + p->ts, p->tl);
                p->t->nodes[r].start = (uint16_t)p->ts;
                p->t->nodes[r].len = (uint16_t)p->tl;
            }
            advance(p);
        } else {
            for (int f = 0; k_funcs[f].name; f++) {
                if (cmd_is(p, k_funcs[f].name)) {
                    r = p_function(p, k_funcs[f].func);
                    goto out;
                }
            }
            return fail(p);
        }
        break;
    }
    default:
        return fail(p);
    }
out:
    p->depth--;
    return p->failed ? -1 : r;
}

static int p_postfix(parser *p)
{
    int r = p_primary(p);
    while (r >= 0 && !p->failed) {
        if (p->k == T_BANG) {
            advance(p);
            r = new_node(p, VF__M_FACT, r, -1);
        } else if (p->k == T_UNDER && p->t->nodes[r].kind == VF__M_NUM &&
                   !(p->t->nodes[r].flags & (VF__MF_DECIMAL | VF__MF_REPEAT)) &&
                   p->t->nodes[r].aux == 0) {
            /* 52_8, 4210_{5}: a number written in another base. */
            size_t j = skip_spaces(p->s, p->n, p->tend);
            size_t k = j;
            int brace = j < p->n && p->s[j] == '{';
            if (brace)
                k++;
            unsigned base = 0;
            while (k < p->n && isdigit((unsigned char)p->s[k]) && base < 100)
                base = base * 10 + (unsigned)(p->s[k++] - '0');
            if (brace) {
                if (k >= p->n || p->s[k] != '}')
                    return fail(p);
                k++;
            } else if (k > j + 1) {
                k = j + 1; /* _{10} needs braces; _8 is one digit */
                base = (unsigned)(p->s[j] - '0');
            }
            if (base < 2 || base > 36)
                return fail(p);
            vf__mnode *m = &p->t->nodes[r];
            for (uint32_t d = 0; d < m->len; d++)
                if ((unsigned)(p->s[m->start + d] - '0') >= base)
                    return fail(p);
            m->aux = (uint16_t)base;
            m->val = NAN;
            p->pos = k;
            peek(p);
        } else {
            break;
        }
    }
    return p->failed ? -1 : r;
}

/* Units and words after a number ("5.4 \text{ cents}", "864 \text{ inches}^2",
 * "18 dollars") carry no value: skip them. */
static void skip_units(parser *p)
{
    while ((p->k == T_TEXT && p->tl > 0) || p->k == T_WORD) {
        /* "and" / "or" separate solutions; the list level handles them. */
        size_t i = p->ts, e = p->ts + p->tl;
        while (i < e && p->s[i] == ' ')
            i++;
        while (e > i && p->s[e - 1] == ' ')
            e--;
        if ((e - i == 3 && strncmp(p->s + i, "and", 3) == 0) ||
            (e - i == 2 && strncmp(p->s + i, "or", 2) == 0))
            return;
        advance(p);
        if (p->k == T_CARET) {
            advance(p);
            if (p->k == T_NUM || p->k == T_LETTER)
                advance(p);
            else if (p->k == T_LC) {
                while (p->k != T_RC && p->k != T_END)
                    advance(p);
                if (p->k == T_RC)
                    advance(p);
            }
        }
    }
    if (p->k == T_TEXT && p->tl == 0)
        advance(p);
}

/* An exponent: "^2", "^{10}", "^-1", "^x"; "a^b^c" is a^(b^c). */
static int p_exponent(parser *p)
{
    int ex;
    if (enter(p) < 0)
        return -1;
    if (p->k == T_NUM) {
        ex = make_number(p); /* plain "x^10" as the writer meant it */
    } else if (p->k == T_MINUS) {
        advance(p);
        int e = p_arg(p);
        ex = e < 0 ? -1 : new_node(p, VF__M_NEG, e, -1);
    } else {
        ex = p_arg(p);
    }
    if (ex >= 0 && p->k == T_CARET) {
        advance(p);
        int up = p_exponent(p);
        ex = up < 0 ? -1 : new_node(p, VF__M_POW, ex, up);
    }
    p->depth--;
    return p->failed ? -1 : ex;
}

static int p_power(parser *p)
{
    int base = p_postfix(p);
    if (base < 0)
        return -1;
    if (p->k != T_CARET)
        return base;
    advance(p);
    int ex = p_exponent(p);
    if (ex < 0)
        return -1;
    return new_node(p, VF__M_POW, base, ex);
}

static int p_unary(parser *p)
{
    if (enter(p) < 0)
        return -1;
    int r;
    if (p->k == T_MINUS) {
        advance(p);
        int a = p_unary(p);
        r = a < 0 ? -1 : new_node(p, VF__M_NEG, a, -1);
    } else if (p->k == T_PLUS) {
        advance(p);
        r = p_unary(p);
    } else {
        r = p_power(p);
    }
    p->depth--;
    return p->failed ? -1 : r;
}

/* Can the current token start a factor multiplied without a sign ("2x", "3\sqrt2",
 * "(a+5)(b+2)")? */
static int starts_implicit(const parser *p)
{
    switch (p->k) {
    case T_NUM: case T_LETTER: case T_LP:
        return 1;
    case T_PIPE:
        return 0; /* "|a||b|" is ambiguous; a '|' after a factor closes an |..| */
    case T_CMD:
        return !(cmd_is(p, "end") || cmd_is(p, "rfloor") || cmd_is(p, "rceil") ||
                 cmd_is(p, "leq") || cmd_is(p, "geq") || cmd_is(p, "neq") ||
                 cmd_is(p, "lt") || cmd_is(p, "gt") || cmd_is(p, "to"));
    default:
        return 0;
    }
}

static int p_term(parser *p)
{
    skip_units(p);
    int left = p_unary(p);
    if (left < 0)
        return -1;
    for (;;) {
        skip_units(p);
        if (p->failed)
            return -1;
        if (p->k == T_STAR || p->k == T_SLASH) {
            int kind = p->k == T_STAR ? VF__M_MUL : VF__M_DIV;
            advance(p);
            skip_units(p);
            int r = p_unary(p);
            if (r < 0)
                return -1;
            left = new_node(p, kind, left, r);
        } else if (starts_implicit(p)) {
            int r = p_power(p);
            if (r < 0)
                return -1;
            left = new_node(p, VF__M_MUL, left, r);
        } else {
            break;
        }
        if (left < 0)
            return -1;
    }
    return left;
}

static int p_sum(parser *p)
{
    if (enter(p) < 0)
        return -1;
    int left;
    if (p->k == T_MINUS) {
        advance(p);
        int a = p_term(p);
        left = a < 0 ? -1 : new_node(p, VF__M_NEG, a, -1);
    } else {
        if (p->k == T_PLUS)
            advance(p);
        left = p_term(p);
    }
    while (left >= 0 && (p->k == T_PLUS || p->k == T_MINUS)) {
        int kind = p->k == T_PLUS ? VF__M_ADD : VF__M_SUB;
        advance(p);
        int r = p_term(p);
        if (r < 0)
            return -1;
        left = new_node(p, kind, left, r);
    }
    p->depth--;
    return p->failed ? -1 : left;
}

static int p_pm(parser *p)
{
    int left;
    if (p->k == T_PM || p->k == T_MP) {
        /* "\pm 3" is the pair {3, -3} */
        left = new_node(p, VF__M_NUM, -1, -1);
        if (left < 0)
            return -1;
        p->t->nodes[left].aux = 1;
        p->t->nodes[left].val = 0.0L;
    } else {
        left = p_sum(p);
    }
    if (left < 0)
        return -1;
    if (p->k == T_PM || p->k == T_MP) {
        advance(p);
        int r = p_sum(p);
        if (r < 0)
            return -1;
        left = new_node(p, VF__M_PM, left, r);
    }
    return left;
}

static int p_union(parser *p)
{
    int left = p_pm(p);
    if (left < 0 || p->k != T_CUP)
        return left;
    int u = new_node(p, VF__M_UNION, left, -1);
    int last = left;
    while (u >= 0 && p->k == T_CUP) {
        advance(p);
        int r = p_pm(p);
        if (r < 0)
            return -1;
        p->t->nodes[last].next = (int16_t)r;
        last = r;
    }
    return u;
}

static int is_rel(tok k)
{
    return k == T_LT || k == T_LE || k == T_GT || k == T_GE;
}

/* An end of an inequality's interval: the bound, or +-infinity when absent. */
static int bound_or_inf(parser *p, int bound, int negative)
{
    if (bound >= 0)
        return bound;
    int inf = new_node(p, VF__M_INF, -1, -1);
    return (negative && inf >= 0) ? new_node(p, VF__M_NEG, inf, -1) : inf;
}

/* "x > 4", "x \le -1", "4 < x", "-1 \le x < 3": the interval they describe.
 * `first` is the expression before the first relation (current token). */
static int p_inequality(parser *p, int first)
{
    int items[3] = { first, -1, -1 };
    tok rel[2];
    int n = 1;
    while (n < 3 && is_rel(p->k)) {
        rel[n - 1] = p->k;
        advance(p);
        items[n++] = p_union(p);
        if (items[n - 1] < 0)
            return -1;
    }
    if (is_rel(p->k))
        return fail(p);
    int lo = -1, hi = -1, lo_closed = 0, hi_closed = 0;
    int var_at = -1;
    for (int k = 0; k < n; k++)
        if (p->t->nodes[items[k]].kind == VF__M_VAR)
            var_at = k;
    if (n == 2 && var_at == 1) {
        /* "4 < x" is "x > 4" */
        int tmp = items[0];
        items[0] = items[1];
        items[1] = tmp;
        rel[0] = rel[0] == T_LT ? T_GT : rel[0] == T_LE ? T_GE : rel[0] == T_GT ? T_LT : T_LE;
        var_at = 0;
    }
    if (n == 2 && var_at == 0) {
        if (rel[0] == T_LT || rel[0] == T_LE) {
            hi = items[1];
            hi_closed = rel[0] == T_LE;
        } else {
            lo = items[1];
            lo_closed = rel[0] == T_GE;
        }
    } else if (n == 3 && var_at == 1) {
        int up = (rel[0] == T_LT || rel[0] == T_LE) && (rel[1] == T_LT || rel[1] == T_LE);
        int down = (rel[0] == T_GT || rel[0] == T_GE) && (rel[1] == T_GT || rel[1] == T_GE);
        if (!up && !down)
            return fail(p);
        lo = up ? items[0] : items[2];
        hi = up ? items[2] : items[0];
        lo_closed = up ? rel[0] == T_LE : rel[1] == T_GE;
        hi_closed = up ? rel[1] == T_LE : rel[0] == T_GE;
    } else {
        return fail(p);
    }
    lo = bound_or_inf(p, lo, 1);
    hi = bound_or_inf(p, hi, 0);
    if (lo < 0 || hi < 0)
        return -1;
    int nd = new_node(p, VF__M_INTERVAL, lo, hi);
    if (nd >= 0)
        p->t->nodes[nd].flags = (uint8_t)((lo_closed ? VF__MF_LO_CLOSED : 0) |
                                          (hi_closed ? VF__MF_HI_CLOSED : 0));
    return nd;
}

static int p_item(parser *p)
{
    if (enter(p) < 0)
        return -1;
    skip_units(p);
    int left = p_union(p);
    if (left >= 0 && is_rel(p->k)) {
        left = p_inequality(p, left);
    } else if (left >= 0 && p->k == T_IN) {
        /* "x \in [-2, 7]": the set is the answer */
        advance(p);
        left = p_union(p);
    } else if (left >= 0 && p->k == T_EQ) {
        advance(p);
        int r = p_union(p);
        left = r < 0 ? -1 : new_node(p, VF__M_EQ, left, r);
    }
    skip_units(p);
    p->depth--;
    return p->failed ? -1 : left;
}

static int is_separator(const parser *p)
{
    if (p->k == T_COMMA || p->k == T_SEMI)
        return 1;
    if (p->k == T_TEXT || p->k == T_WORD) {
        size_t i = p->ts, e = p->ts + p->tl;
        while (i < e && p->s[i] == ' ')
            i++;
        while (e > i && p->s[e - 1] == ' ')
            e--;
        return (e - i == 3 && strncmp(p->s + i, "and", 3) == 0) ||
               (e - i == 2 && strncmp(p->s + i, "or", 2) == 0);
    }
    return 0;
}

static int p_list(parser *p)
{
    if (enter(p) < 0)
        return -1;
    int first = p_item(p);
    if (first < 0)
        return -1;
    if (!is_separator(p)) {
        p->depth--;
        return first;
    }
    int lst = new_node(p, VF__M_LIST, first, -1);
    int last = first;
    while (lst >= 0 && is_separator(p)) {
        advance(p);
        /* "1, 2, and 3" */
        if (is_separator(p))
            advance(p);
        int r = p_item(p);
        if (r < 0)
            return -1;
        p->t->nodes[last].next = (int16_t)r;
        last = r;
    }
    p->depth--;
    return p->failed ? -1 : lst;
}

/* -------------------------------------------------- text and choice answers */

/* "\text{(C)}", "(C)", "C", "\text{C}" -> 'C'; 0 when it is not a lone capital. */
static char choice_letter(const char *s, size_t n)
{
    char buf[64];
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(s + i, "\\text", 5) == 0) {
            i += 4;
            continue;
        }
        if (s[i] == ' ' || s[i] == '{' || s[i] == '}')
            continue;
        if (w + 1 >= sizeof buf)
            return 0;
        buf[w++] = s[i];
    }
    buf[w] = '\0';
    if (w == 3 && buf[0] == '(' && buf[2] == ')')
        return isupper((unsigned char)buf[1]) ? buf[1] : 0;
    if (w == 1 && isupper((unsigned char)buf[0]))
        return buf[0];
    return 0;
}

/* A text answer has words and no mathematics: "\text{Evelyn}", "east", "even".
 * Writes its normal form (lowercase words, single spaces) into `word`. */
static int text_answer(char *word, size_t cap, const char *s, size_t n)
{
    size_t w = 0, run = 0, maxrun = 0;
    for (size_t i = 0; i < n; i++) {
        if (strncmp(s + i, "\\text", 5) == 0) {
            i += 4;
            continue;
        }
        unsigned char c = (unsigned char)s[i];
        if (isalpha(c)) {
            run++;
            if (run > maxrun)
                maxrun = run;
            if (w + 1 < cap)
                word[w++] = (char)tolower(c);
            continue;
        }
        run = 0;
        if (isdigit(c) || c == '\\' || c == '^' || c == '_' || c == '=' || c == '+' ||
            c == '/' || c == '*' || c >= 0x80)
            return 0;
        /* punctuation and spaces separate words */
        if (w > 0 && word[w - 1] != ' ' && w + 1 < cap)
            word[w++] = ' ';
    }
    while (w > 0 && word[w - 1] == ' ')
        w--;
    word[w] = '\0';
    if (maxrun < 2 || is_plain_name(word, w))
        return 0;
    return 1;
}

int vf__math_parse(vf__mtree *t, const char *answer, size_t len)
{
    t->kind = VF__ANS_NONE;
    t->n_nodes = 0;
    t->root = -1;
    t->word[0] = '\0';
    int n = vf__math_clean(t->text, sizeof t->text, answer, len);
    if (n <= 0) {
        t->text_len = 0;
        return -1;
    }
    t->text_len = (size_t)n;
    char c = choice_letter(t->text, t->text_len);
    if (c) {
        t->word[0] = c;
        t->word[1] = '\0';
        t->kind = VF__ANS_CHOICE;
        return 0;
    }
    if (text_answer(t->word, sizeof t->word, t->text, t->text_len)) {
        t->kind = VF__ANS_TEXT;
        return 0;
    }
    t->word[0] = '\0';
    parser p = { .t = t, .s = t->text, .n = t->text_len };
    peek(&p);
    int root = p_list(&p);
    if (root < 0 || p.failed || p.k != T_END)
        return -1;
    t->root = root;
    t->kind = VF__ANS_EXPR;
    return 0;
}
