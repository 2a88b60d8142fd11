/* model_info.c: parameter counts from the model's own tables and MACs per image from its geometry, per stage
 * (model.h states the counting convention, spec gkavision.md 5.2 and 7.4). */
#include <stdio.h>
#include <string.h>

#include "model.h"

static int has_prefix(const char *s, const char *p) {
    return strncmp(s, p, strlen(p)) == 0;
}

/* Conv and linear MACs, attention products and recurrent work of one mixer over T tokens in nw windows of L.
 */
static void mixer_cost(const Mixer *m, int64_t T, int64_t nw, int64_t L, int64_t *macs, int64_t *attn,
                       int64_t *recur) {
    switch (m->kind) {
    case MIX_ATTENTION: {
        const int64_t C = m->attn.proj.out;
        *macs += T * C * 3 * C + T * C * C;
        *attn += nw * 2 * L * L * C;
        break;
    }
    case MIX_MAMBA: {
        const MambaMixer *b = &m->mamba;
        const int64_t C = b->C, Ch = b->Ch, R = b->R, N = b->N;
        *macs += 2 * T * C * C + T * Ch * (R + 2 * N) + T * R * Ch;
        *recur += 3 * T * Ch * N + 2 * 3 * T * Ch;
        break;
    }
    case MIX_GKA: {
        const GkaConfig *c = &m->gka.fwd.cfg;
        const int64_t d = c->hidden_size, H = c->num_heads, K = c->head_dim, V = gka_V(c);
        const int64_t Cq = (int64_t)gka_Hq(c) * K, Ck = (int64_t)gka_Hk(c) * K, Cv = (int64_t)gka_Hv(c) * V;
        const int64_t dirs = m->gka.bidirectional ? 2 : 1;
        int64_t proj = T * d * (Cq + Ck + Cv) + T * d * gka_gate_cols(c) + T * H * V * d;
        if (c->use_gate) proj += T * d * H * V;
        const int64_t conv = T * c->conv_size * (Cq + Ck + (c->use_v_conv ? Cv : 0));
        const int64_t solve = T * H * ((int64_t)c->num_iter * K * K + 2 * K * K + 2 * K * V);
        *macs += dirs * proj;
        *recur += dirs * (conv + solve);
        break;
    }
    }
}

static void level_cost(const Model *m, int l, const LevelGeom *g, StageCost *s) {
    const Level *L = &m->lv[l];
    const int64_t C = L->C;
    s->H = g->H, s->W = g->W, s->C = L->C, s->depth = L->depth;
    snprintf(s->name, sizeof s->name, "level %d", l);
    if (L->conv) {
        s->macs += (int64_t)L->depth * 2 * g->H * g->W * C * C * 9;
        snprintf(s->blocks, sizeof s->blocks, "%d conv", L->depth);
    } else {
        const int64_t nw = (int64_t)g->nH * g->nW, T = nw * g->L;
        int count[3] = {0};
        for (int j = 0; j < L->depth; j++) {
            const TBlock *t = &L->tb[j];
            mixer_cost(&t->mixer, T, nw, g->L, &s->macs, &s->attn_macs, &s->recur_macs);
            s->macs += 2 * T * C * t->hidden;
            count[t->mixer.kind]++;
        }
        static const char *names[3] = {"attention", "mamba", "gka"};
        int at = 0;
        for (int k = 2; k >= 0; k--)
            if (count[k])
                at += snprintf(s->blocks + at, sizeof s->blocks - (size_t)at, "%s%d %s", at ? " + " : "",
                               count[k], names[k]);
    }
    if (L->has_down) s->macs += (int64_t)g->Hout * g->Wout * 2 * C * C * 9;
}

void model_cost(const Model *m, int H, int W, ModelCost *c) {
    memset(c, 0, sizeof *c);
    ModelGeom g;
    model_geometry(m, H, W, &g);
    c->n = MODEL_LEVELS + 2;
    StageCost *stem = &c->st[0], *head = &c->st[MODEL_LEVELS + 1];
    snprintf(stem->name, sizeof stem->name, "stem");
    stem->H = g.H2, stem->W = g.W2, stem->C = m->cfg.dim;
    snprintf(stem->blocks, sizeof stem->blocks, "2 conv");
    stem->macs = (int64_t)g.H1 * g.W1 * m->stem.conv0.OC * m->stem.conv0.IC * 9 +
                 (int64_t)g.H2 * g.W2 * m->stem.conv3.OC * m->stem.conv3.IC * 9;
    for (int l = 0; l < MODEL_LEVELS; l++)
        level_cost(m, l, &g.lv[l], &c->st[l + 1]);
    snprintf(head->name, sizeof head->name, "norm + head");
    head->H = head->W = 1, head->C = m->cfg.num_classes;
    snprintf(head->blocks, sizeof head->blocks, "BN, mean, linear");
    head->macs = (int64_t)m->head.in * m->head.out;
    for (int i = 0; i < m->params.n; i++) {
        const ParamEntry *e = &m->params.e[i];
        int s = MODEL_LEVELS + 1;
        if (has_prefix(e->name, "patch_embed.")) s = 0;
        for (int l = 0; l < MODEL_LEVELS; l++) {
            char p[32];
            snprintf(p, sizeof p, "levels.%d.", l);
            if (has_prefix(e->name, p)) s = l + 1;
        }
        c->st[s].params += (int64_t)e->numel;
        if (e->kind == PARAM_WEIGHT)
            c->params_decay += (int64_t)e->numel;
        else
            c->params_no_decay += (int64_t)e->numel;
    }
    for (int s = 0; s < c->n; s++) {
        c->params += c->st[s].params, c->macs += c->st[s].macs;
        c->attn_macs += c->st[s].attn_macs, c->recur_macs += c->st[s].recur_macs;
    }
    c->buffers = (int64_t)m->buffers.total + m->n_bn;
}
