/* Pending tables: intrusive hash tables keyed by page hash, of the writes in
 * flight (dedupe), the reads in flight (joins) and the lingering pages.
 *
 * Threads: loop thread only. */
#include "store_int.h"

#include <errno.h>
#include <stdlib.h>

/* Returns 0 or -ENOMEM. */
int hc__ptab_init(struct ptab *t)
{
    t->b = calloc(256, sizeof(*t->b));
    if (!t->b)
        return -ENOMEM;
    t->mask = 255;
    t->n = 0;
    return 0;
}

/* The first node of hash h (the one added last), or NULL. */
struct pnode *hc__ptab_find(const struct ptab *t, struct hc_hash h)
{
    for (struct pnode *p = t->b[h.lo & t->mask]; p; p = p->next)
        if (p->h.lo == h.lo && p->h.hi == h.hi)
            return p;
    return NULL;
}

/* Adds n (n->h set) in front of any other node of the same hash. */
void hc__ptab_add(struct ptab *t, struct pnode *n)
{
    if (t->n >= (t->mask + 1) * 2) {
        /* Grow; on failure the chains just get longer. */
        size_t nmask = t->mask * 2 + 1;
        struct pnode **nb = calloc(nmask + 1, sizeof(*nb));
        if (nb) {
            for (size_t i = 0; i <= t->mask; i++) {
                struct pnode *p = t->b[i], *next;
                for (; p; p = next) {
                    next = p->next;
                    p->next = nb[p->h.lo & nmask];
                    nb[p->h.lo & nmask] = p;
                }
            }
            free(t->b);
            t->b = nb;
            t->mask = nmask;
        }
    }
    struct pnode **head = &t->b[n->h.lo & t->mask];
    n->next = *head;
    *head = n;
    t->n++;
}

/* Removes n from t (nothing when it is not there). */
void hc__ptab_del(struct ptab *t, struct pnode *n)
{
    for (struct pnode **pp = &t->b[n->h.lo & t->mask]; *pp; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            t->n--;
            return;
        }
    }
}
