/* rv-dev-scenes.h: the scene grammar of the embedded model (docs/tiny-model.md):
 * prompts drawn from it, and the program that checks whether an image
 * follows a prompt. The rules match tools/train/checker.py. */
#pragma once

#include "reverie.h"

G_BEGIN_DECLS

#define RV_N_COLORS 8
#define RV_N_KINDS 4

extern const char *const rv_scene_colors[RV_N_COLORS];
extern const guint8 rv_scene_palette[RV_N_COLORS][3];
extern const char *const rv_scene_kinds[RV_N_KINDS];     /* circle square triangle ring */

typedef enum {
  RV_TEMPLATE_SINGLE,
  RV_TEMPLATE_LEFT,     /* A to the left of B */
  RV_TEMPLATE_ABOVE,    /* A above B */
} RvTemplate;

/* What a prompt names; -1 = not named. */
typedef struct {
  int color, kind;
  int size;             /* 0 small, 1 large */
  int position;         /* 0 left, 1 right, 2 top, 3 bottom, 4 center */
} RvShapeSpec;

typedef struct {
  RvTemplate  template_;
  int         n_shapes;
  RvShapeSpec shapes[2];
  int         bg;       /* -1 = not named */
  char        prompt[160];
} RvSceneSpec;

/* A prompt of the grammar, deterministic per seed; the optional parts are
 * drawn at random. template_ < 0 draws the template too (half single). */
void        rv_scene_random (guint64 seed, int template_, RvSceneSpec *spec);

/* ---- scenes drawn ---- */

/* A shape placed on the 64×64 grid: its bounding-box centre and side in
 * pixels of the 64-pixel picture (tools/train/scenes.py's Shape). */
typedef struct {
  int    color, kind;
  double cx, cy, side;
} RvPlacedShape;

typedef struct {
  int           bg;
  int           n_shapes;
  RvPlacedShape shapes[2];
} RvSceneLayout;

/* A layout that satisfies spec (sizes from the grammar's ranges, named
 * positions and relations checked on the rendered centroids, two shapes
 * kept apart), deterministic per seed. The same rules as scenes.py's
 * make_scene, with this program's random numbers, so the scenes of a seed
 * differ from the training script's. */
void        rv_scene_layout (guint64 seed, const RvSceneSpec *spec, RvSceneLayout *out);
/* The layout drawn at n×n pixels: centres and sides scaled by n / 64,
 * pixels sampled at their centres, hard edges (scenes.py's render_at), so
 * rv_scene_render (l, 64) is the training picture and larger n the exact
 * picture a perfect upscaler would make. */
RvImage    *rv_scene_render (const RvSceneLayout *l, int n);

/* ---- the checker ---- */

typedef struct {
  int    color, kind;
  int    size;                  /* 0 small, 1 large */
  double cx, cy, side;          /* fractions of the image side */
  int    pixels;
  int    x0, y0, x1, y1;        /* bounding box on the 64×64 grid */
} RvFoundShape;

typedef struct {
  int          bg;
  int          n_shapes;        /* all components, even beyond the array */
  RvFoundShape shapes[8];       /* the largest ones */
} RvAnalysis;

void        rv_scene_analyse (const RvImage *img, RvAnalysis *out);

/* Attributes judged, in the order of rv_scene_attribute_names. */
enum {
  RV_ATTR_COUNT, RV_ATTR_BG, RV_ATTR_COLOR, RV_ATTR_KIND, RV_ATTR_SIZE, RV_ATTR_POSITION,
  RV_ATTR_RELATION, RV_N_ATTRS
};
extern const char *const rv_scene_attribute_names[RV_N_ATTRS];

/* TRUE if the image satisfies the prompt. checked[i] says whether attribute
 * i was judged, passed[i] whether it held (either may be NULL). */
gboolean    rv_scene_check (const RvImage *img, const RvSceneSpec *spec, gboolean *checked,
                            gboolean *passed);

G_END_DECLS
