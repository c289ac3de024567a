/*
 * report_html.c - `eval --report FILE.html` and `predict --report FILE.html`: one self-contained HTML
 * file (docs/report.md). Everything is computed here in C (ROC points, histogram bins, thresholds,
 * thumbnails); the page's small inline script only sorts the image table, records script errors into
 * the DOM and, opened with #selftest, checks its own sorting (tests/test_report.sh).
 */
#define _GNU_SOURCE
#include "report_html.h"
#include "outputs.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* One row of the image table. */
typedef struct report_row {
    char *path;
    const char *type;  /* eval: defect type (points into the dataset); NULL for predict */
    int label;         /* -1 unknown (predict), 0 good, 1 defective */
    float score;
    double normalized; /* NaN: none */
    int decision;      /* -1 none, 0 ok, 1 anomalous */
    int32_t n_regions; /* -1 none */
    char *thumb;       /* base64 PNG, or NULL */
    int32_t tw, th;
    size_t order;      /* input order, the tie-break of the score sort */
} report_row;

struct cli_report {
    bool eval;
    char title[512];
    char *model_path;
    pc_model_info info;
    double image_threshold;     /* NaN: no decisions */
    char image_source[512];
    double pixel_threshold, pixel_scale; /* the overlay's; NaN threshold: plain thumbnails */
    char overlay_source[512];
    report_row *rows;
    size_t n, cap, n_failed;
    /* eval only */
    const pc_eval_result *res;
    pc_mask_rule mask_rule;
    double *roc[2][3]; /* [image, pixel][fpr, tpr, threshold] */
    size_t roc_n[2];
};

/* ---- small output helpers -------------------------------------------------------------------- */

static void html_text(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

/* A number for display, or an em dash for NaN. */
static void html_num(FILE *f, const char *fmt, double v) {
    if (isnan(v)) fputs("&#8212;", f);
    else fprintf(f, fmt, v);
}

static char *base64(const uint8_t *src, size_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out) return NULL;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)src[i] << 16 | (uint32_t)src[i + 1] << 8 | src[i + 2];
        *o++ = tab[v >> 18], *o++ = tab[(v >> 12) & 63], *o++ = tab[(v >> 6) & 63], *o++ = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)src[i] << 16 | (i + 1 < n ? (uint32_t)src[i + 1] << 8 : 0);
        *o++ = tab[v >> 18], *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

/* ---- rows and thumbnails --------------------------------------------------------------------- */

static report_row *add_row(cli_report *rep, const char *path) {
    if (rep->n == rep->cap) {
        size_t cap = rep->cap ? 2 * rep->cap : 64;
        report_row *r = realloc(rep->rows, cap * sizeof *r);
        if (!r) return NULL;
        rep->rows = r;
        rep->cap = cap;
    }
    report_row *row = &rep->rows[rep->n];
    memset(row, 0, sizeof *row);
    if (!(row->path = strdup(path))) return NULL;
    row->order = rep->n++;
    row->label = row->decision = row->n_regions = -1;
    row->normalized = NAN;
    return row;
}

/* Draw the map on the original image (when there is a threshold), shrink it to fit CLI_REPORT_THUMB
 * and keep it as base64 PNG. decoded is the image the map was predicted from, or NULL to decode
 * row->path again. A failure leaves the row without a thumbnail and is reported on stderr; the report
 * is still written. */
static void make_thumb(report_row *row, const cli_report *rep, const float *map, const pc_geometry *g,
                       const pc_image *decoded) {
    pc_image own = {0}, ov = {0};
    uint8_t *small = NULL, *png = NULL;
    size_t png_size = 0;
    pc_status st = PC_OK;
    if (!decoded && (st = pc_image_load(row->path, &own)) != PC_OK) goto fail;
    const pc_image *orig = decoded ? decoded : &own, *src = orig;
    double shrink = (double)CLI_REPORT_THUMB / (double)(orig->width > orig->height ? orig->width : orig->height);
    if (shrink > 1) shrink = 1;
    if (map && g && !isnan(rep->pixel_threshold) && rep->pixel_scale > 0) {
        pc_overlay_options opt;
        pc_overlay_options_init(&opt, rep->pixel_threshold, rep->pixel_scale);
        /* Outlines about 2 thumbnail pixels thick after the shrink (the default is ~1 original pixel
         * per 300, which a 5x shrink would blur away). */
        opt.outline_width = (int32_t)ceil(2.0 / shrink);
        if ((st = pc_overlay_render(&ov, orig, map, g, &opt)) != PC_OK) goto fail;
        src = &ov;
    }
    int32_t tw = (int32_t)lround(src->width * shrink), th = (int32_t)lround(src->height * shrink);
    if (tw < 1) tw = 1;
    if (th < 1) th = 1;
    if (!(small = malloc((size_t)tw * (size_t)th * 3))) {
        st = PC_ERR_NO_MEMORY;
        goto fail;
    }
    if ((st = pc_resize_bilinear_u8(small, tw, th, src->data, src->width, src->height, 3)) != PC_OK) goto fail;
    pc_image thumb = {tw, th, 3, small};
    if ((st = pc_image_encode_png(&png, &png_size, &thumb, 9)) != PC_OK) goto fail;
    row->thumb = base64(png, png_size);
    row->tw = tw;
    row->th = th;
    goto done;
fail:
    cli_error("report: %s: no thumbnail: %s", row->path, st == PC_ERR_NO_MEMORY ? "out of memory" : pc_last_error());
done:
    pc_buffer_free(png);
    free(small);
    pc_image_free(&ov);
    pc_image_free(&own);
}

static int cmp_rows(const void *a, const void *b) {
    const report_row *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1; /* worst first */
    return x->order < y->order ? -1 : x->order > y->order;
}

/* ---- SVG pieces ------------------------------------------------------------------------------ */

/* A ROC curve in a 330 x 320 SVG. The curve is drawn in data coordinates (a group scaled to the plot
 * box and flipped), so the polyline's points are the FPR,TPR pairs themselves (%.9g). */
static void svg_roc(FILE *f, const char *id, const char *caption, const double *fpr, const double *tpr,
                    const double *thr, size_t n) {
    const int X0 = 50, Y0 = 10, W = 260;
    fprintf(f, "<figure class=\"roc\"><svg id=\"%s\" class=\"roc\" xmlns=\"http://www.w3.org/2000/svg\" width=\"330\" "
               "height=\"320\" viewBox=\"0 0 330 320\" role=\"img\" aria-label=\"",
            id);
    html_text(f, caption);
    fprintf(f, "\">\n<g transform=\"matrix(%d,0,0,%d,%d,%d)\">\n", W, -W, X0, Y0 + W);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"1\" height=\"1\" class=\"frame\" vector-effect=\"non-scaling-stroke\"/>\n");
    for (int t = 1; t < 4; t++)
        fprintf(f, "<path d=\"M%g 0V1M0 %gH1\" class=\"grid\" vector-effect=\"non-scaling-stroke\"/>\n", t * 0.25,
                t * 0.25);
    fprintf(f, "<path d=\"M0 0L1 1\" class=\"chance\" vector-effect=\"non-scaling-stroke\"/>\n");
    fprintf(f, "<polyline class=\"curve\" data-curve=\"%s\" vector-effect=\"non-scaling-stroke\" points=\"", id);
    for (size_t i = 0; i < n; i++) fprintf(f, "%s%.9g,%.9g", i ? " " : "", fpr[i], tpr[i]);
    fprintf(f, "\" data-thresholds=\"");
    for (size_t i = 0; i < n; i++) {
        if (isinf(thr[i])) fprintf(f, "%sinf", i ? " " : "");
        else fprintf(f, "%s%.9g", i ? " " : "", thr[i]);
    }
    fprintf(f, "\"/>\n</g>\n");
    for (int t = 0; t <= 4; t++) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">%g</text>", X0 + t * W / 4,
                Y0 + W + 16, t * 0.25);
        fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"end\">%g</text>\n", X0 - 4,
                Y0 + W - t * W / 4 + 4, t * 0.25);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">false positive rate</text>", X0 + W / 2, Y0 + W + 34);
    fprintf(f, "<text transform=\"translate(14,%d) rotate(-90)\" text-anchor=\"middle\">true positive rate</text>\n",
            Y0 + W / 2);
    fprintf(f, "</svg><figcaption>");
    html_text(f, caption);
    fprintf(f, "</figcaption></figure>\n");
}

/* Histogram of the scores (30 bins), one series per label (eval: good, defective; predict: all), and
 * the image threshold as a dashed line. */
static void svg_histogram(FILE *f, const cli_report *rep) {
    enum { BINS = 30 };
    const int X0 = 50, Y0 = 10, W = 520, H = 200;
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < rep->n; i++) {
        lo = fmin(lo, rep->rows[i].score);
        hi = fmax(hi, rep->rows[i].score);
    }
    if (!isnan(rep->image_threshold)) lo = fmin(lo, rep->image_threshold), hi = fmax(hi, rep->image_threshold);
    if (!(hi > lo)) lo -= 0.5, hi += 0.5;
    double pad = 0.02 * (hi - lo);
    lo -= pad, hi += pad;
    int count[2][BINS] = {{0}};
    int maxc = 1;
    for (size_t i = 0; i < rep->n; i++) {
        int b = (int)floor((rep->rows[i].score - lo) / (hi - lo) * BINS);
        b = b < 0 ? 0 : b >= BINS ? BINS - 1 : b;
        int s = rep->rows[i].label == 1;
        if (++count[s][b] > maxc) maxc = count[s][b];
    }
    fprintf(f, "<figure><svg id=\"histogram\" xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"260\" "
               "viewBox=\"0 0 600 260\" role=\"img\" aria-label=\"histogram of image scores\">\n");
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"frame\"/>\n", X0, Y0, W, H);
    const char *cls[2] = {rep->eval ? "good" : "all", "defective"};
    for (int s = 0; s < 2; s++)
        for (int b = 0; b < BINS; b++) {
            if (!count[s][b]) continue;
            double bh = (double)H * count[s][b] / maxc;
            fprintf(f, "<rect class=\"bar %s\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"><title>%s: %d</title></rect>\n",
                    cls[s], X0 + (double)W * b / BINS, Y0 + H - bh, (double)W / BINS, bh, cls[s], count[s][b]);
        }
    if (!isnan(rep->image_threshold)) {
        double x = X0 + (rep->image_threshold - lo) / (hi - lo) * W;
        fprintf(f, "<line id=\"threshold-line\" class=\"threshold\" x1=\"%.2f\" y1=\"%d\" x2=\"%.2f\" y2=\"%d\"/>",
                x, Y0, x, Y0 + H);
        fprintf(f, "<text x=\"%.2f\" y=\"%d\" class=\"tick\" text-anchor=\"start\">threshold %.5g</text>\n", x + 3,
                Y0 + 12, rep->image_threshold);
    }
    for (int t = 0; t <= 4; t++) {
        double v = lo + (hi - lo) * t / 4;
        fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">%.4g</text>", X0 + W * t / 4,
                Y0 + H + 16, v);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"end\">%d</text>", X0 - 4, Y0 + 10, maxc);
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"end\">0</text>\n", X0 - 4, Y0 + H);
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">image score</text>\n", X0 + W / 2, Y0 + H + 34);
    fprintf(f, "<text transform=\"translate(14,%d) rotate(-90)\" text-anchor=\"middle\">images</text>\n", Y0 + H / 2);
    if (rep->eval)
        fprintf(f, "<rect class=\"bar good\" x=\"%d\" y=\"%d\" width=\"12\" height=\"12\"/><text x=\"%d\" y=\"%d\">good</text>"
                   "<rect class=\"bar defective\" x=\"%d\" y=\"%d\" width=\"12\" height=\"12\"/><text x=\"%d\" y=\"%d\">defective</text>\n",
                X0 + W - 170, Y0 + 24, X0 + W - 154, Y0 + 35, X0 + W - 90, Y0 + 24, X0 + W - 74, Y0 + 35);
    fprintf(f, "</svg><figcaption>Image scores%s%s.</figcaption></figure>\n",
            rep->eval ? " of good and defective test images" : "",
            isnan(rep->image_threshold) ? " (no image threshold: the model is not calibrated)"
                                        : ", dashed line: the image threshold");
}

/* ---- the page -------------------------------------------------------------------------------- */

static const char *sampler_name(pc_sampler s) {
    return s == PC_SAMPLER_APPROX_GREEDY ? "approximate greedy coreset" : s == PC_SAMPLER_RANDOM ? "random" : "none";
}

static const char CSS[] =
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}"
    "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ccc}"
    "table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;vertical-align:middle}"
    "table.kv th{font-weight:normal;color:#555}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}"
    "#images th{white-space:nowrap;cursor:pointer;user-select:none;background:#eee;position:sticky;top:0}"
    "#images th[aria-sort=ascending]::after{content:' \\25B2'}#images th[aria-sort=descending]::after{content:' \\25BC'}"
    "#images tr:nth-child(even){background:#f7f7f7}#images td.path{word-break:break-all;max-width:420px}"
    ".anomalous{color:#b00;font-weight:bold}.ok{color:#070}"
    "figure{display:inline-block;margin:0 1.5em 1em 0;vertical-align:top}figcaption{max-width:600px;color:#444}figure.roc figcaption{max-width:330px}"
    "svg text{font:11px sans-serif;fill:#333}svg .frame{fill:none;stroke:#888}svg .grid{stroke:#e4e4e4}"
    "svg .chance{stroke:#aaa;stroke-dasharray:4 3}svg .curve{fill:none;stroke:#c03;stroke-width:2}"
    "svg .bar.good,svg .bar.all{fill:#2a7ab0;fill-opacity:.65}svg .bar.defective{fill:#e07b00;fill-opacity:.65}"
    "svg .threshold{stroke:#c00;stroke-width:1.5;stroke-dasharray:6 3}"
    "#model td.num{text-align:left}.note{background:#f4f4f0;border-left:4px solid #bba;padding:.5em 1em}#js-errors{color:#b00}";

/* Runs first: any later script error (a syntax error included) lands in the DOM. */
static const char JS_HEAD[] =
    "window.pcErrors=[];window.onerror=function(m,s,l,c){window.pcErrors.push(String(m)+' (line '+l+':'+c+')');"
    "document.documentElement.setAttribute('data-js-errors',String(window.pcErrors.length));"
    "var e=document.getElementById('js-errors');if(e){e.textContent=window.pcErrors.join('\\n');e.hidden=false;}"
    "return false;};";

/* Sorting: click (or Enter on) a header; numbers sort by data-v, first click descending; text by its
 * data-v or text, first click ascending; ties keep the current order. #selftest checks it. */
static const char JS_BODY[] =
    "(function(){'use strict';\n"
    "var table=document.getElementById('images'),body=table.tBodies[0],heads=table.tHead.rows[0].cells;\n"
    "function key(row,col,num){var c=row.cells[col];if(num){var v=parseFloat(c.getAttribute('data-v'));"
    "return isNaN(v)?-Infinity:v;}var d=c.getAttribute('data-v');return d===null?c.textContent:d;}\n"
    "function isNum(col){return heads[col].getAttribute('data-type')==='num';}\n"
    "function sortBy(col,desc){var num=isNum(col),rows=Array.prototype.slice.call(body.rows);\n"
    "var keyed=rows.map(function(r,i){return [key(r,col,num),i,r];});\n"
    "keyed.sort(function(a,b){var d=a[0]<b[0]?-1:a[0]>b[0]?1:0;return (desc?-d:d)||a[1]-b[1];});\n"
    "keyed.forEach(function(k){body.appendChild(k[2]);});\n"
    "for(var j=0;j<heads.length;j++)heads[j].removeAttribute('aria-sort');\n"
    "heads[col].setAttribute('aria-sort',desc?'descending':'ascending');}\n"
    "function toggle(col){var s=heads[col].getAttribute('aria-sort');"
    "sortBy(col,s?s==='ascending':isNum(col));}\n"
    "Array.prototype.forEach.call(heads,function(th,col){if(th.getAttribute('data-type')==='none')return;"
    "th.tabIndex=0;th.addEventListener('click',function(){toggle(col);});"
    "th.addEventListener('keydown',function(e){if(e.key==='Enter'){toggle(col);}});});\n"
    "function colOf(k){for(var j=0;j<heads.length;j++)if(heads[j].getAttribute('data-key')===k)return j;return -1;}\n"
    "function ordered(col,desc){var num=isNum(col),p=null,ok=true;Array.prototype.forEach.call(body.rows,"
    "function(r){var k=key(r,col,num);if(p!==null&&(desc?k>p:k<p))ok=false;p=k;});return ok;}\n"
    "function selftest(){var out=[],sc=colOf('score'),pc=colOf('path'),n=body.rows.length;\n"
    "if(!ordered(sc,true))out.push('initial order is not by score, descending');\n"
    "heads[sc].click();if(!ordered(sc,false)||heads[sc].getAttribute('aria-sort')!=='ascending')out.push('score ascending');\n"
    "heads[sc].click();if(!ordered(sc,true)||heads[sc].getAttribute('aria-sort')!=='descending')out.push('score descending');\n"
    "heads[pc].click();if(!ordered(pc,false))out.push('path ascending');\n"
    "heads[pc].click();if(!ordered(pc,true))out.push('path descending');\n"
    "if(body.rows.length!==n)out.push('rows lost');\n"
    "heads[sc].click();if(!ordered(sc,true))out.push('back to score descending');\n"
    "var r=out.length?'fail: '+out.join('; '):'pass';document.documentElement.setAttribute('data-selftest',r);\n"
    "var e=document.getElementById('selftest');e.textContent='self-test: '+r;e.hidden=false;}\n"
    "if(location.hash==='#selftest')selftest();\n"
    "document.documentElement.setAttribute('data-rendered','1');\n"
    "})();\n";

static void kv(FILE *f, const char *id, const char *name, const char *fmt, double v) {
    fprintf(f, "<tr><th>%s</th><td class=\"num\"", name);
    if (id) fprintf(f, " id=\"%s\"", id);
    if (!isnan(v)) fprintf(f, " data-v=\"%.17g\"", v);
    fputc('>', f);
    html_num(f, fmt, v);
    fputs("</td></tr>\n", f);
}

static void write_model(FILE *f, const cli_report *rep) {
    const pc_model_info *in = &rep->info;
    fprintf(f, "<section id=\"model\"><h2>Model</h2><table class=\"kv\">\n<tr><th>file</th><td>");
    html_text(f, rep->model_path);
    fprintf(f, "</td></tr>\n<tr><th>backbone</th><td>%s, layers", pc_arch_name(in->arch));
    for (int i = 0; i < in->n_layers; i++) fprintf(f, "%s layer%d", i ? "," : "", (int)in->layers[i]);
    fprintf(f, "</td></tr>\n<tr><th>batch-norm statistics</th><td id=\"bn-stats\" data-bn=\"%s\">%s</td></tr>\n",
            pc_bn_stats_name(in->bn_stats),
            in->bn_stats == PC_BN_REFERENCE ? "reference (the reference code&#8217;s warm-up)"
            : in->bn_stats_implicit        ? "trained (the weights&#8217; running statistics; the model file predates the setting)"
                                           : "trained (the weights&#8217; running statistics)");
    fprintf(f, "<tr><th>precision</th><td id=\"precision\" data-precision=\"%s\">%s</td></tr>\n",
            pc_precision_name(in->precision),
            in->precision == PC_PRECISION_BF16 ? "bf16 (bfloat16 backbone convolutions, float32 accumulation)"
                                               : "f32 (float32 throughout)");
    fprintf(f, "<tr><th>preprocessing</th><td>resize %d, centre crop %d</td></tr>\n", (int)in->resize,
            (int)in->crop);
    fprintf(f, "<tr><th>patch features</th><td>p = %d, pre-dim %d, dim %d, grid %d&#215;%d</td></tr>\n",
            (int)in->patch, (int)in->pre_dim, (int)in->dim, (int)in->grid_h, (int)in->grid_w);
    fprintf(f, "<tr><th>memory bank</th><td>%lld of %lld patches from %d training images (%s, ratio %g, seed %llu)</td></tr>\n",
            (long long)in->bank_size, (long long)in->n_patches_total, (int)in->n_train_images,
            sampler_name(in->sampler), in->coreset_ratio, (unsigned long long)in->seed);
    fprintf(f, "<tr><th>scoring</th><td>k = %d%s", (int)in->k, in->reweight_b ? ", Eq. 7 reweighting" : ", image score = largest patch score");
    if (in->reweight_b) fprintf(f, " with b = %d", (int)in->reweight_b);
    fprintf(f, "</td></tr>\n");
    kv(f, NULL, "calibrated image threshold", "%.6g", in->image_threshold);
    kv(f, NULL, "calibrated pixel threshold", "%.6g", in->pixel_threshold);
    kv(f, NULL, "score scale", "%.6g", in->score_scale);
    kv(f, NULL, "pixel scale", "%.6g", in->pixel_scale);
    fprintf(f, "</table></section>\n");
}

static void write_thresholds(FILE *f, const cli_report *rep) {
    fprintf(f, "<section id=\"thresholds\"><h2>Thresholds used in this report</h2><div class=\"note\"><p id=\"image-threshold-source\">Image threshold ");
    html_num(f, "%.6g", rep->image_threshold);
    fputs(": ", f);
    html_text(f, rep->image_source);
    fprintf(f, "</p><p id=\"overlay-source\">Overlays: ");
    html_text(f, rep->overlay_source);
    fprintf(f, "</p><p>Decisions and regions use the rule <i>anomalous when value &gt; threshold</i>. The "
               "overlay colours are fixed (docs/visualisation.md): invisible up to one scale below the pixel "
               "threshold, dark purple to red up to it, orange to pale yellow above; regions above the pixel "
               "threshold are outlined in cyan.</p></div></section>\n");
}

static void write_table(FILE *f, const cli_report *rep) {
    fprintf(f, "<section id=\"images-section\"><h2>Images</h2><p>Worst (highest score) first. Click a column "
               "header to sort by it; click again to reverse.</p>\n<table id=\"images\"><thead><tr>"
               "<th class=\"num\" data-key=\"rank\" data-type=\"num\">#</th>"
               "<th data-key=\"path\" data-type=\"text\">image</th>");
    if (rep->eval)
        fprintf(f, "<th data-key=\"type\" data-type=\"text\">type</th><th data-key=\"label\" data-type=\"text\">label</th>");
    fprintf(f, "<th class=\"num\" data-key=\"score\" data-type=\"num\" aria-sort=\"descending\">score</th>"
               "<th class=\"num\" data-key=\"normalized\" data-type=\"num\">normalised</th>"
               "<th data-key=\"decision\" data-type=\"text\">decision</th>"
               "<th class=\"num\" data-key=\"regions\" data-type=\"num\">regions</th>"
               "<th data-key=\"overlay\" data-type=\"none\">overlay</th></tr></thead>\n<tbody>\n");
    for (size_t i = 0; i < rep->n; i++) {
        const report_row *r = &rep->rows[i];
        fprintf(f, "<tr><td class=\"num\" data-v=\"%zu\">%zu</td><td class=\"path\">", i + 1, i + 1);
        html_text(f, r->path);
        fputs("</td>", f);
        if (rep->eval) {
            fputs("<td>", f);
            html_text(f, r->type ? r->type : "");
            fprintf(f, "</td><td>%s</td>", r->label == 1 ? "defective" : "good");
        }
        fprintf(f, "<td class=\"num\" data-v=\"%.9g\">%.6g</td>", (double)r->score, (double)r->score);
        fputs("<td class=\"num\"", f);
        if (!isnan(r->normalized)) fprintf(f, " data-v=\"%.6f\"", r->normalized);
        fputc('>', f);
        html_num(f, "%.3f", r->normalized);
        fprintf(f, "</td><td class=\"%s\">%s</td>", r->decision == 1 ? "anomalous" : r->decision == 0 ? "ok" : "",
                r->decision == 1 ? "anomalous" : r->decision == 0 ? "ok" : "&#8212;");
        if (r->n_regions >= 0) fprintf(f, "<td class=\"num\" data-v=\"%d\">%d</td>", (int)r->n_regions, (int)r->n_regions);
        else fputs("<td class=\"num\">&#8212;</td>", f);
        fputs("<td>", f);
        if (r->thumb) {
            fprintf(f, "<img width=\"%d\" height=\"%d\" alt=\"overlay of ", (int)r->tw, (int)r->th);
            html_text(f, r->path);
            fprintf(f, "\" src=\"data:image/png;base64,%s\">", r->thumb);
        } else {
            fputs("(no thumbnail)", f);
        }
        fputs("</td></tr>\n", f);
    }
    fprintf(f, "</tbody></table></section>\n");
}

static void write_eval_metrics(FILE *f, const cli_report *rep) {
    const pc_eval_result *r = rep->res;
    fprintf(f, "<section id=\"metrics\"><h2>Metrics</h2><table class=\"kv\">\n");
    kv(f, "image-auroc", "image AUROC", "%.4f", r->image_auroc);
    kv(f, "pixel-auroc", "pixel AUROC", "%.4f", r->pixel_auroc);
    kv(f, "aupro", "AUPRO (FPR &#8804; 0.3)", "%.4f", r->aupro);
    kv(f, "image-f1-max", "image F1-max", "%.4f", r->image_f1_max);
    kv(f, "pixel-f1-max", "pixel F1-max", "%.4f", r->pixel_f1_max);
    kv(f, NULL, "image threshold at F1-max (score &gt; t)", "%.6g", r->image_f1_threshold);
    kv(f, NULL, "pixel threshold at F1-max (value &gt; t)", "%.6g", r->pixel_f1_threshold);
    fprintf(f, "<tr><th>ground-truth mask rule (pixel metrics)</th><td id=\"mask-rule\" data-rule=\"%s\">",
            pc_mask_rule_name(rep->mask_rule));
    html_text(f, cli_mask_rule_desc(rep->mask_rule));
    fputs("</td></tr>\n", f);
    kv(f, "n-good", "good test images", "%.0f", (double)r->n_good);
    kv(f, "n-defective", "defective test images", "%.0f", (double)r->n_defective);
    kv(f, NULL, "mean predict time (ms)", "%.1f", r->mean_predict_ms);
    fprintf(f, "</table>\n");
    /* The confusion counts at the report's image threshold. */
    int tp = 0, fp = 0, fn = 0, tn = 0;
    for (size_t i = 0; i < rep->n; i++) {
        int d = rep->rows[i].decision == 1, l = rep->rows[i].label == 1;
        tp += d && l, fp += d && !l, fn += !d && l, tn += !d && !l;
    }
    fprintf(f, "<h3>Decisions at the image threshold</h3><table class=\"kv\" id=\"decisions\">"
               "<tr><th></th><th>judged anomalous</th><th>judged ok</th></tr>"
               "<tr><th>defective</th><td class=\"num\">%d</td><td class=\"num\">%d</td></tr>"
               "<tr><th>good</th><td class=\"num\">%d</td><td class=\"num\">%d</td></tr></table>\n",
            tp, fn, fp, tn);
    fprintf(f, "<h3>Image AUROC per defect type (against all good images)</h3><table class=\"kv\" id=\"per-type\">"
               "<tr><th>type</th><th>images</th><th>image AUROC</th></tr>\n");
    for (int32_t t = 0; t < r->n_types; t++) {
        fputs("<tr><th>", f);
        html_text(f, r->per_type[t].name);
        fprintf(f, "</th><td class=\"num\">%d</td><td class=\"num\">", (int)r->per_type[t].n);
        html_num(f, "%.4f", r->per_type[t].image_auroc);
        fputs("</td></tr>\n", f);
    }
    fprintf(f, "</table></section>\n");
}

static void write_predict_counts(FILE *f, const cli_report *rep) {
    int an = 0, ok = 0, none = 0;
    for (size_t i = 0; i < rep->n; i++) {
        an += rep->rows[i].decision == 1, ok += rep->rows[i].decision == 0, none += rep->rows[i].decision < 0;
    }
    fprintf(f, "<section id=\"metrics\"><h2>Counts</h2><table class=\"kv\">\n");
    kv(f, "n-images", "images scored", "%.0f", (double)rep->n);
    kv(f, "n-failed", "images that could not be read", "%.0f", (double)rep->n_failed);
    kv(f, "n-anomalous", "judged anomalous", "%.0f", (double)an);
    kv(f, "n-ok", "judged ok", "%.0f", (double)ok);
    if (none) kv(f, "n-undecided", "no decision (uncalibrated)", "%.0f", (double)none);
    fprintf(f, "</table></section>\n");
}

static void write_page(FILE *f, const cli_report *rep) {
    char when[64] = "";
    time_t now = time(NULL);
    struct tm tmv;
    if (localtime_r(&now, &tmv)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %z", &tmv);
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\" data-report=\"%s\"><head><meta charset=\"utf-8\">\n"
               "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
               "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n<title>",
            rep->eval ? "eval" : "predict");
    html_text(f, rep->title);
    fprintf(f, "</title>\n<style>%s</style>\n<script>%s</script>\n</head><body>\n<h1>", CSS, JS_HEAD);
    html_text(f, rep->title);
    fprintf(f, "</h1>\n<p>Written by patchcore %s on %s. One self-contained file: nothing is loaded from "
               "elsewhere.</p>\n<pre id=\"js-errors\" hidden></pre><p id=\"selftest\" hidden></p>\n",
            pc_version(), when);
    if (rep->eval) write_eval_metrics(f, rep);
    else write_predict_counts(f, rep);
    write_thresholds(f, rep);
    fprintf(f, "<section id=\"curves\"><h2>%s</h2>\n", rep->eval ? "Curves" : "Scores");
    if (rep->eval) {
        char cap[256];
        snprintf(cap, sizeof cap, "Image-level ROC (AUROC %.4f): %zu points, one per distinct image score",
                 rep->res->image_auroc, rep->roc_n[0]);
        svg_roc(f, "roc-image", cap, rep->roc[0][0], rep->roc[0][1], rep->roc[0][2], rep->roc_n[0]);
        snprintf(cap, sizeof cap, "Pixel-level ROC (AUROC %.4f, mask rule %s): %zu points along the curve (at most %d)",
                 rep->res->pixel_auroc, pc_mask_rule_name(rep->mask_rule), rep->roc_n[1], CLI_REPORT_PIXEL_ROC_POINTS);
        svg_roc(f, "roc-pixel", cap, rep->roc[1][0], rep->roc[1][1], rep->roc[1][2], rep->roc_n[1]);
    }
    svg_histogram(f, rep);
    fprintf(f, "</section>\n");
    write_model(f, rep);
    write_table(f, rep);
    fprintf(f, "<script>\n%s</script>\n</body></html>\n", JS_BODY);
}

/* Write the page to a temporary file beside out_path, flush it to disk and rename it into place. */
static int write_report(const cli_report *rep, const char *out_path) {
    size_t len = strlen(out_path);
    char *tmp = malloc(len + 16);
    if (!tmp) {
        cli_error("%s: out of memory", out_path);
        return -1;
    }
    snprintf(tmp, len + 16, "%s.tmp-XXXXXX", out_path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        cli_error("%s: cannot create a temporary file beside it: %s", out_path, strerror(errno));
        free(tmp);
        return -1;
    }
    fchmod(fd, 0644);
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        free(tmp);
        cli_error("%s: cannot write: %s", out_path, strerror(errno));
        return -1;
    }
    write_page(f, rep);
    int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
    int err = errno;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, out_path) != 0) {
        cli_error("%s: write failed: %s", out_path, strerror(bad ? err : errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

static void report_free(cli_report *rep) {
    if (!rep) return;
    for (size_t i = 0; i < rep->n; i++) {
        free(rep->rows[i].path);
        free(rep->rows[i].thumb);
    }
    free(rep->rows);
    for (int c = 0; c < 2; c++)
        for (int j = 0; j < 3; j++) free(rep->roc[c][j]);
    free(rep->model_path);
    free(rep);
}

/* ---- eval ------------------------------------------------------------------------------------ */

int cli_report_eval(const char *out_path, const char *category, const char *model_path, const pc_model *model,
                    const pc_dataset *ds, const pc_eval_result *r, const pc_eval_detail *d, pc_mask_rule mask_rule) {
    cli_report *rep = calloc(1, sizeof *rep);
    float *scores = NULL, *good = NULL;
    uint8_t *labels = NULL;
    size_t *off = NULL;
    int rc = -1;
    if (!rep || !(rep->model_path = strdup(model_path))) goto oom;
    rep->eval = true;
    rep->res = r;
    rep->mask_rule = mask_rule;
    pc_model_get_info(model, &rep->info);
    snprintf(rep->title, sizeof rep->title, "patchcore evaluation: %s", category);
    /* The maps lie one after the other, each at its geometry's size (crop x crop, or the image's when
     * the model tiles): off[i] is where image i's starts. */
    const size_t n = ds->n_test;
    size_t npix = 0, n_good_px = 0;
    scores = malloc(n * sizeof *scores);
    labels = malloc(n);
    off = malloc((n + 1) * sizeof *off);
    if (!scores || !labels || !off) goto oom;
    size_t n_good = 0;
    for (size_t i = 0; i < n; i++) {
        scores[i] = d->predictions[i].score;
        labels[i] = ds->test[i].type != ds->good_type;
        n_good += !labels[i];
        int32_t mw, mh;
        cli_map_dims(&d->geometries[i], &mw, &mh);
        off[i] = npix;
        npix += (size_t)mw * (size_t)mh;
        if (!labels[i]) n_good_px += (size_t)mw * (size_t)mh;
    }
    off[n] = npix;
    /* Good maps' pixels, for the overlay's scale when the model has none. */
    if (!(good = malloc(n_good_px * sizeof *good))) goto oom;
    for (size_t i = 0, k = 0; i < n; i++)
        if (!labels[i]) {
            memcpy(good + k, d->maps + off[i], (off[i + 1] - off[i]) * sizeof *good);
            k += off[i + 1] - off[i];
        }

    /* Image threshold and normalised scores: the model's, or the evaluation's F1-optimal threshold. */
    const pc_model_info *in = &rep->info;
    double score_scale = NAN;
    bool image_cal = !isnan(in->image_threshold);
    if (image_cal) {
        rep->image_threshold = in->image_threshold;
        snprintf(rep->image_source, sizeof rep->image_source,
                 "the model's calibrated threshold; normalised scores with the model's scale %.6g.", in->score_scale);
    } else {
        rep->image_threshold = r->image_f1_threshold;
        /* pc_threshold_scale over the good scores only. */
        float *gs = malloc(n_good * sizeof *gs);
        if (!gs) goto oom;
        for (size_t i = 0, k = 0; i < n; i++)
            if (!labels[i]) gs[k++] = scores[i];
        if (pc_threshold_scale(&score_scale, rep->image_threshold, gs, n_good) != PC_OK) score_scale = NAN;
        free(gs);
        snprintf(rep->image_source, sizeof rep->image_source,
                 "the model is not calibrated, so this is the evaluation's own F1-optimal image threshold on "
                 "this test set (optimistic: chosen with the labels it is judged on); normalised scores with "
                 "scale %.6g = threshold - median good test score.",
                 score_scale);
    }
    /* Overlay threshold and scale. */
    if (!isnan(in->pixel_threshold)) {
        rep->pixel_threshold = in->pixel_threshold;
        if (in->pixel_scale > 0) {
            rep->pixel_scale = in->pixel_scale;
            snprintf(rep->overlay_source, sizeof rep->overlay_source,
                     "the model's calibrated pixel threshold %.6g and pixel scale %.6g.", rep->pixel_threshold,
                     rep->pixel_scale);
        } else {
            if (pc_threshold_scale(&rep->pixel_scale, rep->pixel_threshold, good, n_good_px) != PC_OK) goto lib;
            snprintf(rep->overlay_source, sizeof rep->overlay_source,
                     "the model's calibrated pixel threshold %.6g; the model has no pixel scale (calibrated before "
                     "it was stored), so scale %.6g = threshold - median pixel value of the good test images.",
                     rep->pixel_threshold, rep->pixel_scale);
        }
    } else {
        rep->pixel_threshold = r->pixel_f1_threshold;
        if (pc_threshold_scale(&rep->pixel_scale, rep->pixel_threshold, good, n_good_px) != PC_OK) goto lib;
        snprintf(rep->overlay_source, sizeof rep->overlay_source,
                 "the model is not calibrated, so pixel threshold %.6g is the evaluation's own F1-optimal pixel "
                 "threshold on this test set, and scale %.6g = threshold - median pixel value of the good test "
                 "images.",
                 rep->pixel_threshold, rep->pixel_scale);
    }
    free(good);
    good = NULL;

    /* ROC curves: every distinct image score; the pixel curve thinned. */
    size_t caps[2] = {n + 1, CLI_REPORT_PIXEL_ROC_POINTS};
    for (int c = 0; c < 2; c++)
        for (int j = 0; j < 3; j++)
            if (!(rep->roc[c][j] = malloc(caps[c] * sizeof(double)))) goto oom;
    if (pc_metric_roc_curve(rep->roc[0][0], rep->roc[0][1], rep->roc[0][2], caps[0], &rep->roc_n[0], scores, labels,
                            n) != PC_OK ||
        pc_metric_roc_curve(rep->roc[1][0], rep->roc[1][1], rep->roc[1][2], caps[1], &rep->roc_n[1], d->maps, d->masks,
                            npix) != PC_OK)
        goto lib;

    for (size_t i = 0; i < n; i++) {
        report_row *row = add_row(rep, ds->test[i].path);
        if (!row) goto oom;
        row->type = ds->type_names[ds->test[i].type];
        row->label = labels[i];
        row->score = scores[i];
        if (image_cal) {
            row->normalized = d->predictions[i].normalized;
            row->decision = d->predictions[i].anomalous != 0;
        } else {
            row->normalized = score_scale > 0 ? pc_threshold_normalize(scores[i], rep->image_threshold, score_scale) : NAN;
            row->decision = scores[i] > rep->image_threshold;
        }
        int32_t nr = 0;
        if (pc_regions_from_map(NULL, 0, &nr, d->maps + off[i], 0, rep->pixel_threshold, &d->geometries[i]) == PC_OK)
            row->n_regions = nr;
        make_thumb(row, rep, d->maps + off[i], &d->geometries[i], NULL);
    }
    qsort(rep->rows, rep->n, sizeof *rep->rows, cmp_rows);
    rc = write_report(rep, out_path);
    goto done;
oom:
    cli_error("report: out of memory");
    goto done;
lib:
    cli_error("report: %s", pc_last_error());
done:
    free(scores);
    free(labels);
    free(good);
    free(off);
    report_free(rep);
    return rc;
}

/* ---- predict --------------------------------------------------------------------------------- */

cli_report *cli_report_predict_begin(const char *model_path, const pc_model_info *info, bool threshold_overridden) {
    cli_report *rep = calloc(1, sizeof *rep);
    if (!rep || !(rep->model_path = strdup(model_path))) {
        free(rep);
        cli_error("report: out of memory");
        return NULL;
    }
    rep->info = *info;
    snprintf(rep->title, sizeof rep->title, "patchcore predictions: %s", model_path);
    rep->image_threshold = info->image_threshold;
    if (isnan(info->image_threshold))
        snprintf(rep->image_source, sizeof rep->image_source,
                 "none: the model is not calibrated (run patchcore calibrate, or give --threshold), so there are "
                 "no decisions and no normalised scores.");
    else
        snprintf(rep->image_source, sizeof rep->image_source, "%s; normalised scores with scale %.6g.",
                 threshold_overridden ? "given with --threshold" : "the model's calibrated threshold",
                 info->score_scale);
    rep->pixel_threshold = info->pixel_threshold;
    rep->pixel_scale = NAN;
    if (isnan(info->pixel_threshold)) {
        snprintf(rep->overlay_source, sizeof rep->overlay_source,
                 "none: the model has no pixel threshold (run patchcore calibrate), so the thumbnails show the "
                 "images without the map, and no regions are counted.");
    } else if (info->pixel_scale > 0) {
        rep->pixel_scale = info->pixel_scale;
        snprintf(rep->overlay_source, sizeof rep->overlay_source,
                 "the model's calibrated pixel threshold %.6g and pixel scale %.6g.", rep->pixel_threshold,
                 rep->pixel_scale);
    } else {
        rep->pixel_scale = info->pixel_threshold / 2; /* as predict --overlays (cli_overlay_options) */
        snprintf(rep->overlay_source, sizeof rep->overlay_source,
                 "the model's calibrated pixel threshold %.6g; the model has no pixel scale (calibrated before "
                 "it was stored), so half the threshold, %.6g, stands in, as for predict --overlays "
                 "(recalibrate for the proper scale).",
                 rep->pixel_threshold, rep->pixel_scale);
    }
    return rep;
}

int cli_report_predict_add(cli_report *rep, const char *path, const pc_image *rgb, const pc_prediction *pred,
                           const float *map, const pc_geometry *geom, int32_t n_regions) {
    report_row *row = add_row(rep, path);
    if (!row) {
        cli_error("report: out of memory");
        return -1;
    }
    row->score = pred->score;
    if (!isnan(rep->image_threshold)) {
        row->normalized = pred->normalized;
        row->decision = pred->anomalous != 0;
    }
    row->n_regions = n_regions;
    make_thumb(row, rep, map, geom, rgb);
    return 0;
}

int cli_report_predict_finish(cli_report *rep, const char *out_path, size_t n_failed) {
    int rc = 0;
    if (rep && out_path) {
        rep->n_failed = n_failed;
        qsort(rep->rows, rep->n, sizeof *rep->rows, cmp_rows);
        rc = write_report(rep, out_path);
    }
    report_free(rep);
    return rc;
}
