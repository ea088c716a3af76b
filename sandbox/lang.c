/*
 * The language table: how each language's code is written, compiled and run
 * inside the sandbox. Adding a language is adding a row here (and, if its
 * toolchain lives outside /usr, /lib and /bin, a bind mount in child.c).
 *
 * Interpreter paths are absolute and come from configuration, never from PATH:
 * the python3 on a developer's PATH may be a pyenv shim script that execs
 * things outside the sandbox's root.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sandbox/sandbox_int.h"

static char python3_path[SBX__PATH_MAX] = "/usr/bin/python3";
static char lua_path[SBX__PATH_MAX] = "/usr/bin/lua5.4";

/* -B: no .pyc files in /work; -E: ignore PYTHON* (the environment is fixed
 * anyway); -s: no user site-packages. Not -I: it would drop /work from
 * sys.path, and tests import the solution as a module. */
static const char *python3_run[] = { python3_path, "-B", "-E", "-s", "main.py", NULL };

/* gcc and g++ run inside the sandbox too, with the compile limits of
 * sandbox_int.h; -pipe keeps the intermediates out of /tmp. */
static const char *c_compile[] = { "/usr/bin/gcc", "-std=gnu17", "-O2", "-pipe", "-o", "main",
                                   "main.c", "-lm", NULL };
static const char *cpp_compile[] = { "/usr/bin/g++", "-std=gnu++17", "-O2", "-pipe", "-o",
                                     "main", "main.cpp", NULL };
static const char *native_run[] = { "./main", NULL };
static const char *bash_run[] = { "/bin/bash", "main.sh", NULL };
static const char *lua_run[] = { lua_path, "main.lua", NULL };

static sbx_language table[] = {
    { "python3", "main.py", NULL, python3_run, false },
    { "c", "main.c", c_compile, native_run, false },
    { "cpp", "main.cpp", cpp_compile, native_run, false },
    { "bash", "main.sh", NULL, bash_run, false },
    { "lua", "main.lua", NULL, lua_run, false },
};

#define NLANG (sizeof table / sizeof table[0])

static int set_path(char *dst, const char *src, const char *what, char *err, size_t errlen)
{
    if (!src)
        return 0;
    if (src[0] != '/' || strlen(src) >= SBX__PATH_MAX) {
        snprintf(err, errlen, "%s interpreter path must be absolute and shorter than %d bytes: "
                 "'%.100s'", what, SBX__PATH_MAX, src);
        return -1;
    }
    memcpy(dst, src, strlen(src) + 1);
    return 0;
}

int sbx__lang_init(const char *python3, const char *lua, char *err, size_t errlen)
{
    if (set_path(python3_path, python3, "python3", err, errlen) < 0 ||
        set_path(lua_path, lua, "lua", err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < NLANG; i++) {
        const char *tool = table[i].compile ? table[i].compile[0] : table[i].run[0];
        table[i].available = access(tool, X_OK) == 0;
    }
    return 0;
}

const sbx_language *sbx_languages(size_t *count)
{
    *count = NLANG;
    return table;
}

const sbx_language *sbx_language_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < NLANG; i++)
        if (strcmp(table[i].name, name) == 0)
            return &table[i];
    return NULL;
}
