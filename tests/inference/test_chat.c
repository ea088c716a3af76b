/*
 * Chat templates: recognition from tokenizer_config.json and rendering,
 * against the exact strings the Qwen2.5, Qwen3, Llama 3 and Llama 3.1 Jinja
 * templates produce for plain conversations.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "inference/inference.h"

/* Abbreviated but faithful pieces of the real templates (what recognition
 * looks at). */
#define QWEN25_JINJA                                                                       \
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + "              \
    "messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou "  \
    "are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"     \
    "{%- endif %}"
#define QWEN3_JINJA                                                                        \
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + "           \
    "message.content + '<|im_end|>' + '\\n' }}{%- endfor %}"
#define LLAMA3_JINJA                                                                       \
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'" \
    "+ message['content'] | trim + '<|eot_id|>' %}"
#define LLAMA31_JINJA                                                                      \
    "{{- \\\"Cutting Knowledge Date: December 2023\\\\n\\\" }}" LLAMA3_JINJA

static void write_config(const char *dir, const char *json)
{
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(json, f);
    fclose(f);
}

static char *render(const char *jinja_json, const inf_chat_message *m, size_t n, bool gen)
{
    char dir[] = "/tmp/inf_chat_XXXXXX", path[512];
    assert_non_null(mkdtemp(dir));
    char *json = malloc(strlen(jinja_json) + 64);
    sprintf(json, "{\"chat_template\": \"%s\"}", jinja_json);
    write_config(dir, json);
    free(json);
    inf_chat_template t;
    inf_error err = {0};
    if (inf_chat_template_load(&t, dir, &err))
        fail_msg("%s", err.message);
    char *text;
    size_t len;
    if (inf_chat_render(&text, &len, &t, m, n, gen, &err))
        fail_msg("%s", err.message);
    assert_int_equal(strlen(text), len);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    unlink(path);
    rmdir(dir);
    return text;
}

static const inf_chat_message conv[] = {
    {"system", "  Be brief.\n"},
    {"user", "What is 2+2?"},
    {"assistant", "4"},
    {"user", " And 3+3? "},
};

static void expect(const char *jinja, const inf_chat_message *m, size_t n, bool gen,
                   const char *want)
{
    char *got = render(jinja, m, n, gen);
    assert_string_equal(got, want);
    free(got);
}

static void test_inference_chat__chatml(void **state)
{
    /* Qwen3 / plain ChatML: contents verbatim, no default system */
    expect(QWEN3_JINJA, conv, 4, true,
           "<|im_start|>system\n  Be brief.\n<|im_end|>\n"
           "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
           "<|im_start|>assistant\n4<|im_end|>\n"
           "<|im_start|>user\n And 3+3? <|im_end|>\n"
           "<|im_start|>assistant\n");
    expect(QWEN3_JINJA, conv + 1, 1, false, "<|im_start|>user\nWhat is 2+2?<|im_end|>\n");
    /* Qwen2.5: its default system message when none is given */
    expect(QWEN25_JINJA, conv + 1, 1, true,
           "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
           "assistant.<|im_end|>\n"
           "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
           "<|im_start|>assistant\n");
    expect(QWEN25_JINJA, conv, 2, false,
           "<|im_start|>system\n  Be brief.\n<|im_end|>\n"
           "<|im_start|>user\nWhat is 2+2?<|im_end|>\n");
}

static void test_inference_chat__llama3(void **state)
{
    /* Llama 3: BOS text, contents trimmed */
    expect(LLAMA3_JINJA, conv, 4, true,
           "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nAnd 3+3?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    /* Llama 3.1: the system header with its dates always comes first */
    expect(LLAMA31_JINJA, conv + 1, 1, true,
           "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
           "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect(LLAMA31_JINJA, conv, 2, false,
           "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
           "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>");
}

static void test_inference_chat__errors(void **state)
{
    char dir[] = "/tmp/inf_chat_XXXXXX", path[512];
    assert_non_null(mkdtemp(dir));
    inf_chat_template t;
    inf_error err = {0};
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"{\"chat_template\": \"{{ '### Human: ' + message.content }}\"}",
         "unsupported chat template in tokenizer_config.json; pass --chat-template FILE.lua (a Lua "
         "function(messages) -> string)"},
        {"{\"bos_token\": \"<s>\"}", "has no chat_template; pass --chat-template FILE"},
        {"{\"chat_template\": ", "bad JSON"},
    };
    for (size_t i = 0; i < 3; i++) {
        write_config(dir, cases[i].json);
        assert_int_equal(inf_chat_template_load(&t, dir, &err), INF_EINVALID);
        if (!strstr(err.message, cases[i].needle))
            fail_msg("case %zu: \"%s\"", i, err.message);
    }
    /* the list form of chat_template picks "default" */
    write_config(dir, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}, "
                      "{\"name\": \"default\", \"template\": \"<|im_start|>\"}]}");
    assert_int_equal(inf_chat_template_load(&t, dir, &err), 0);
    assert_int_equal(t.family, INF_CHAT_CHATML);
    inf_chat_message bad[] = {{"tool", "{}"}};
    char *text;
    size_t len;
    assert_int_equal(inf_chat_render(&text, &len, &t, bad, 1, true, &err), INF_EINVALID);
    assert_non_null(strstr(err.message, "role 'tool'"));
    assert_null(text);
    /* no messages: just the generation prompt */
    assert_int_equal(inf_chat_render(&text, &len, &t, NULL, 0, true, &err), 0);
    assert_string_equal(text, "<|im_start|>assistant\n");
    free(text);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    unlink(path);
    rmdir(dir);
    assert_int_equal(inf_chat_template_load(&t, "/nonexistent", &err), INF_EIO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inference_chat__chatml),
        cmocka_unit_test(test_inference_chat__llama3),
        cmocka_unit_test(test_inference_chat__errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
