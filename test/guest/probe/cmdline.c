#include "cmdline.h"

static char text[CMDLINE_MAX];
static size_t len;

void cmdline_init(u64 addr, u32 max_len)
{
	len = 0;
	text[0] = 0;
	if (!addr)
		return;
	if (max_len == 0 || max_len > CMDLINE_MAX - 1)
		max_len = CMDLINE_MAX - 1;
	const char *src = (const char *)(uintptr_t)addr;
	while (len < max_len && src[len]) {
		text[len] = src[len];
		len++;
	}
	text[len] = 0;
}

const char *cmdline_text(void) { return text; }
size_t cmdline_len(void) { return len; }

/* Iterate over words; for each, give key span and value span (value without quotes). */
static const char *next_word(const char *p, const char **ks, size_t *kl, const char **vs,
			     size_t *vl, bool *has_val)
{
	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (!*p)
		return NULL;
	*ks = p;
	while (*p && *p != '=' && *p != ' ' && *p != '\t' && *p != '\n')
		p++;
	*kl = (size_t)(p - *ks);
	*has_val = false;
	*vs = p;
	*vl = 0;
	if (*p == '=') {
		p++;
		*has_val = true;
		if (*p == '"') {
			p++;
			*vs = p;
			while (*p && *p != '"')
				p++;
			*vl = (size_t)(p - *vs);
			if (*p == '"')
				p++;
		} else {
			*vs = p;
			while (*p && *p != ' ' && *p != '\t' && *p != '\n')
				p++;
			*vl = (size_t)(p - *vs);
		}
	}
	/* skip the rest of a malformed word */
	while (*p && *p != ' ' && *p != '\t' && *p != '\n')
		p++;
	return p;
}

bool cmdline_get(const char *key, char *buf, size_t size)
{
	const char *p = text, *ks, *vs;
	size_t kl, vl, klen = strlen(key);
	bool hv, found = false;
	while ((p = next_word(p, &ks, &kl, &vs, &vl, &hv))) {
		if (kl == klen && !memcmp(ks, key, kl)) {
			found = true;
			if (size) {
				size_t n = vl < size - 1 ? vl : size - 1;
				memcpy(buf, vs, n);
				buf[n] = 0;
			}
		}
	}
	return found;
}

u64 cmdline_u64(const char *key, u64 def)
{
	char v[32];
	u64 x;
	if (cmdline_get(key, v, sizeof(v)) && parse_u64(v, &x))
		return x;
	return def;
}

bool cmdline_flag(const char *key)
{
	char v[16];
	if (!cmdline_get(key, v, sizeof(v)))
		return false;
	return strcmp(v, "0") && strcmp(v, "no") && strcmp(v, "off") && strcmp(v, "false");
}

bool cmdline_list_has(const char *key, const char *item)
{
	char v[512];
	if (!cmdline_get(key, v, sizeof(v)))
		return false;
	size_t il = strlen(item);
	const char *p = v;
	while (*p) {
		const char *e = p;
		while (*e && *e != ',')
			e++;
		if ((size_t)(e - p) == il && !memcmp(p, item, il))
			return true;
		p = *e ? e + 1 : e;
	}
	return false;
}
