/* How one configuration value is written: see config_value.h. */
#include "config_value.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "key.h"

/* Decimal digits only, no sign, no overflow. */
bool hc__cfg_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    size_t i;

    if (len == 0)
        return false;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *out = v;
    return true;
}

/* "4096", "64M", "64MiB", "64MB", "1g", "512B": digits, then an optional
 * K/M/G/T (any case, binary units), then an optional "iB" or "B". */
bool hc__cfg_parse_size(const char *s, uint64_t *out)
{
    static const char units[] = "KMGT";
    size_t n = strspn(s, "0123456789");
    const char *suf = s + n, *u;
    uint64_t v, unit = 1;

    if (!hc__cfg_parse_u64(s, n, &v))
        return false;
    if (*suf && (u = strchr(units, toupper((unsigned char)*suf)))) {
        unit = UINT64_C(1) << (10 * (u - units + 1));
        suf++;
        if (strcmp(suf, "iB") == 0)
            suf += 2;
    }
    if (strcmp(suf, "B") == 0)
        suf++;
    if (*suf != '\0' || v > UINT64_MAX / unit)
        return false;
    *out = v * unit;
    return true;
}

/* "0660", "660", "0o660": octal digits. */
bool hc__cfg_parse_mode(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (s[0] == '0' && (s[1] == 'o' || s[1] == 'O'))
        s += 2;
    if (*s == '\0' || strlen(s) > 6)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '7')
            return false;
        v = v * 8 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

bool hc__cfg_parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    size_t i;

    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/* Appends one list item (trimmed of blanks) to out as ",item". Returns false
 * when the item is empty or has a byte outside [A-Za-z0-9_.-]. */
bool hc__cfg_list_add(const char *s, size_t len, char *out, size_t outlen)
{
    size_t o = strlen(out);

    while (len > 0 && (*s == ' ' || *s == '\t'))
        s++, len--;
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
        len--;
    if (len == 0 || len > HC_LIST_ITEM_MAX || o + len + 2 > outlen)
        return false;
    if (hc_name_invalid("name", s, len) != NULL)
        return false;
    if (o > 0)
        out[o++] = ',';
    memcpy(out + o, s, len);
    out[o + len] = '\0';
    return true;
}

bool hc__cfg_list_add_csv(const char *s, size_t len, char *out, size_t outlen)
{
    const char *end = s + len;

    if (strlen(s) != len)
        return false;
    for (;;) {
        const char *comma = memchr(s, ',', (size_t)(end - s));
        const char *stop = comma ? comma : end;
        if (!hc__cfg_list_add(s, (size_t)(stop - s), out, outlen))
            return false;
        if (!comma)
            return true;
        s = comma + 1;
    }
}

/* Builds the canonical "a,b,c" form of a list value into *out (malloc'd, or
 * NULL for anyone). Returns 0, -EINVAL or -ENOMEM. */
int hc__cfg_parse_list(const json_t *j, const char *s, char **out)
{
    size_t cap = 1, i;
    const char *str = s;
    size_t len = s ? strlen(s) : 0;
    char *buf;

    if (j && json_is_null(j)) {
        *out = NULL;
        return 0;
    }
    if (j && json_is_string(j)) {
        str = json_string_value(j);
        len = json_string_length(j);
    } else if (j && !json_is_array(j)) {
        return -EINVAL;
    }
    if (str && len == 0) {
        *out = NULL;
        return 0;
    }
    if (str) {
        cap += len + 1;
    } else {
        if (json_array_size(j) == 0)
            return -EINVAL;
        cap += json_array_size(j) * (HC_LIST_ITEM_MAX + 2);
    }
    buf = calloc(1, cap);
    if (!buf)
        return -ENOMEM;
    if (str) {
        if (!hc__cfg_list_add_csv(str, len, buf, cap))
            goto err;
    } else {
        for (i = 0; i < json_array_size(j); i++) {
            const json_t *e = json_array_get(j, i);
            char num[24];
            if (json_is_integer(e) && json_integer_value(e) >= 0) {
                snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(e));
                if (!hc__cfg_list_add(num, strlen(num), buf, cap))
                    goto err;
            } else if (!json_is_string(e) ||
                       !hc__cfg_list_add(json_string_value(e), json_string_length(e), buf, cap) ||
                       strlen(json_string_value(e)) != json_string_length(e)) {
                goto err;
            }
        }
    }
    *out = buf;
    return 0;
err:
    free(buf);
    return -EINVAL;
}
