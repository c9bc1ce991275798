#ifndef LOUPE_SELFSTATS_H
#define LOUPE_SELFSTATS_H
#include "core/loupe.h"

void selfstats_collect(struct loupe *L, struct registry *reg);
const char *feature_state_name(enum feature_state s);

#endif
