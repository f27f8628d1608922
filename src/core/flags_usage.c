/* -h for the flag engine: every entry of a table in one of two layouts (flags.h). The caller
 * prints its own header (what the program does) around it. */
#include <stdio.h>
#include <string.h>

#include "flags.h"

/* The value's name after the flag, as Go prints it: a bool (and -h, -version) needs none. */
static const char *arg_word(const kp_flag_spec *f)
{
    if (f->arg != NULL)
        return f->arg;
    switch (f->type) {
    case KP_FLAG_STRING:
    case KP_FLAG_ENUM:
        return "string";
    case KP_FLAG_DURATION:
        return "duration";
    case KP_FLAG_UINT:
        return "uint";
    case KP_FLAG_FUNC:
        return "value";
    case KP_FLAG_BOOL:
    case KP_FLAG_HELP:
    case KP_FLAG_VERSION:
        return "";
    }
    return "";
}

static bool is_builtin(const kp_flag_spec *f)
{
    return f->type == KP_FLAG_HELP || f->type == KP_FLAG_VERSION;
}

/* "name", or "h, -help" for a flag with an alias. */
static void display_name(const kp_flag_spec *f, char *buf, size_t cap)
{
    if (f->alias != NULL)
        snprintf(buf, cap, "%s, -%s", f->name, f->alias);
    else
        snprintf(buf, cap, "%s", f->name);
}

static void print_default(const kp_flag_spec *f, bool quote_strings, FILE *out)
{
    if (f->shown_def != NULL)
        fputs(f->shown_def, out);
    else if (f->def == NULL)
        fputs("none", out);
    else if (quote_strings && f->type == KP_FLAG_STRING)
        fprintf(out, "\"%s\"", f->def);
    else
        fputs(f->def, out);
}

/* "trace, debug, info, warn or error" */
static void print_choices(const kp_flag_spec *f, FILE *out)
{
    for (size_t i = 0; i < f->n_choices; i++)
        fprintf(out, "%s%s",
                i == 0                  ? ""
                : i + 1 == f->n_choices ? " or "
                                        : ", ",
                f->choices[i] != NULL ? f->choices[i] : "?");
}

static void usage_columns(const kp_flag_spec *specs, size_t count, FILE *out)
{
    int width = 0;
    for (size_t i = 0; i < count; i++) {
        if (specs[i].name == NULL)
            continue;
        char name[64];
        display_name(&specs[i], name, sizeof name);
        int w = (int)(strlen(name) + 1 + strlen(arg_word(&specs[i])));
        if (w > width)
            width = w;
    }
    width += 2;

    bool env_only = false;
    for (size_t i = 0; i < count; i++) {
        const kp_flag_spec *f = &specs[i];
        if (f->name == NULL) {
            env_only = true;
            continue;
        }
        char name[64];
        char head[96];
        display_name(f, name, sizeof name);
        snprintf(head, sizeof head, "%s %s", name, arg_word(f));
        fprintf(out, "  -%-*s %s", width, head, f->help);
        if (!is_builtin(f)) {
            if (f->env != NULL)
                fprintf(out, " (env %s, default ", f->env);
            else
                fputs(" (default ", out);
            print_default(f, true, out);
            fputc(')', out);
        }
        fputc('\n', out);
    }
    if (!env_only)
        return;

    fputs("\nEnvironment only:\n", out);
    for (size_t i = 0; i < count; i++) {
        const kp_flag_spec *f = &specs[i];
        if (f->name != NULL || f->env == NULL)
            continue;
        fprintf(out, "  %-*s %s", width + 1, f->env, f->help);
        if (f->type == KP_FLAG_ENUM) {
            fputs(": ", out);
            print_choices(f, out);
        }
        fputs(" (default ", out);
        print_default(f, true, out);
        fputs(")\n", out);
    }
}

static void usage_go(const kp_flag_spec *specs, size_t count, FILE *out)
{
    for (size_t i = 0; i < count; i++) {
        const kp_flag_spec *f = &specs[i];
        char name[64];
        if (f->name != NULL)
            display_name(f, name, sizeof name);
        else
            snprintf(name, sizeof name, "%s", f->env != NULL ? f->env : "?");
        const char *word = arg_word(f);
        fprintf(out, "  %s%s%s%s\n    \t%s", f->name != NULL ? "-" : "", name, word[0] ? " " : "",
                word, f->help);
        if (!is_builtin(f)) {
            fputs(" (default ", out);
            print_default(f, false, out);
            fputc(')', out);
        }
        fputc('\n', out);
    }
}

void kp_flags_usage(const kp_flag_spec *specs, size_t count, kp_flags_layout layout, FILE *out)
{
    if (out == NULL)
        return;
    if (layout == KP_FLAGS_LAYOUT_GO)
        usage_go(specs, count, out);
    else
        usage_columns(specs, count, out);
    fflush(out);
}
