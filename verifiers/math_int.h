/*
 * Private to verifiers/math_*.c: the parsed form of one MATH answer.
 *
 * An answer goes through four steps, one file each:
 *   math_extract.c  completion -> answer text (last \boxed, phrase, trailing $..$)
 *   math_clean.c    answer text -> cleaned text (spacing, \left, \dfrac, $, ...)
 *   math_parse.c    cleaned text -> vf__mtree (text, choice or expression)
 *   math_value.c    two trees -> equal or not (exact GMP rationals where both sides
 *                   are exact numbers, else a seeded numeric identity test)
 *
 * Everything is bounded: the answer text (VF__MATH_MAX_INPUT), the number of
 * nodes, the parser's recursion depth, and in math_value.c the size of every
 * exact intermediate. A tree lives in caller storage (about 60 KiB) and holds
 * no heap memory, so there is nothing to free. The node budget covers any
 * answer that fits VF__MATH_MAX_INPUT ("1+1+...+1" makes one node per byte).
 */
#ifndef ENVSRV_VERIFIERS_MATH_INT_H
#define ENVSRV_VERIFIERS_MATH_INT_H

#include <stddef.h>
#include <stdint.h>

#include "verifiers/verifiers.h"

/* Longest answer text accepted, in bytes; longer answers are "no answer". */
#define VF__MATH_MAX_INPUT  1000
#define VF__MATH_MAX_NODES  1200
#define VF__MATH_MAX_DEPTH  200 /* parser frames; one bracket level takes about 5 */

typedef enum vf__mkind {
    VF__M_NUM = 1,   /* literal: span in text; flags DECIMAL/REPEAT; aux = base (0: decimal;
                        1: synthetic small integer held in val) */
    VF__M_VAR,       /* variable: hash of its name in `hash` */
    VF__M_PI, VF__M_E, VF__M_I, VF__M_INF,
    VF__M_ADD, VF__M_SUB, VF__M_MUL, VF__M_DIV, VF__M_POW,   /* a op b */
    VF__M_NEG,       /* -a */
    VF__M_FUNC,      /* aux = vf__mfunc, argument a */
    VF__M_LOG,       /* log of a, base b (-1: natural) */
    VF__M_ROOT,      /* root of a, index b (-1: square root) */
    VF__M_FACT,      /* a! */
    VF__M_BINOM,     /* binom(a, b) */
    VF__M_PM,        /* a \pm b: the two values a+b, a-b */
    VF__M_EQ,        /* a = b */
    /* Structures: children are a, a.next, ... */
    VF__M_LIST,      /* comma-separated solutions, order ignored */
    VF__M_SET,       /* \{ ... \}, order ignored */
    VF__M_TUPLE,     /* ( , ), order matters; (a,b) also reads as an open interval */
    VF__M_INTERVAL,  /* a = low end, b = high end; flags LO_CLOSED / HI_CLOSED */
    VF__M_UNION,     /* intervals joined by \cup */
    VF__M_MATRIX,    /* rows; each row a VF__M_ROW of cells */
    VF__M_ROW
} vf__mkind;

typedef enum vf__mfunc {
    VF__F_SIN, VF__F_COS, VF__F_TAN, VF__F_COT, VF__F_SEC, VF__F_CSC,
    VF__F_ASIN, VF__F_ACOS, VF__F_ATAN,
    VF__F_SINH, VF__F_COSH, VF__F_TANH,
    VF__F_EXP, VF__F_ABS, VF__F_FLOOR, VF__F_CEIL
} vf__mfunc;

#define VF__MF_DECIMAL    0x01  /* NUM written with a decimal point */
#define VF__MF_REPEAT     0x02  /* NUM with \overline{..}: rep_start/rep_len */
#define VF__MF_LO_CLOSED  0x04
#define VF__MF_HI_CLOSED  0x08

typedef struct vf__mnode {
    uint8_t kind;           /* vf__mkind */
    uint8_t flags;          /* VF__MF_* */
    uint16_t aux;           /* function id, or number base */
    int16_t a, b;           /* children, -1 when absent */
    int16_t next;           /* next sibling in a structure, -1 at the end */
    uint16_t start, len;    /* NUM: digits span in the tree's text; VAR: its name */
    uint16_t rep_start, rep_len; /* NUM with REPEAT: repeating digits span */
    uint32_t hash;          /* VAR: name hash */
    double val;             /* NUM: numeric value, rounded once (NaN for REPEAT, bases and
                               long literals: then converted from the exact value) */
} vf__mnode;

typedef enum vf__manswer {
    VF__ANS_NONE = 0,       /* nothing parsable */
    VF__ANS_EXPR,           /* nodes[root] */
    VF__ANS_TEXT,           /* word: lowercase letters/digits, single spaces */
    VF__ANS_CHOICE          /* word: one capital letter */
} vf__manswer;

typedef struct vf__mtree {
    vf__manswer kind;
    char text[VF_MATH_TEXT_MAX];    /* cleaned answer; NUM spans point into it */
    size_t text_len;
    char word[VF_MATH_TEXT_MAX];    /* TEXT / CHOICE normal form */
    vf__mnode nodes[VF__MATH_MAX_NODES];
    int n_nodes;
    int root;
} vf__mtree;

/*
 * Cleans an answer: removes \left/\right, spacing commands, $, \%, degree signs,
 * folds \dfrac/\tfrac into \frac, the text commands into \text, unicode signs into
 * LaTeX, trailing periods, and thousands separators. Writes at most `cap` bytes with
 * the NUL. Returns the cleaned length, or -1 when the input is too long.
 */
int vf__math_clean(char *out, size_t cap, const char *in, size_t len);

/*
 * Parses an answer into `t` (caller storage, overwritten). Returns 0 when it is a
 * text, a choice letter or an expression (t->kind says which), -1 when it is empty,
 * too long or malformed (t->kind is then VF__ANS_NONE; t->text still holds the
 * cleaned text when there was one).
 */
int vf__math_parse(vf__mtree *t, const char *answer, size_t len);

/* Writes a canonical text rendering of `t` for reports (never fails; truncates). */
void vf__math_render(char *out, size_t cap, const vf__mtree *t);

/* Compares two parsed answers. Returns 1 when equal, 0 when not. */
int vf__math_tree_equal(const vf__mtree *x, const vf__mtree *y);

#endif
