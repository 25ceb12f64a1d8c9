/* paths.h: where sasp's programs find their files when no option names them, and their version.
 *
 * A program run from a source tree finds the model and the demo page there (models/sasp-small and
 * www/, relative to the current directory, as README's commands run it); an installed one finds them
 * under the compiled-in SASP_PKGDATADIR, $(datadir)/sasp, which `make install` fills. -m and --www
 * override both. SASP_PKGDATADIR and SASP_VERSION come from configure (Makefile.am's install section). */
#ifndef SASP_PATHS_H
#define SASP_PATHS_H

#ifndef SASP_VERSION
#define SASP_VERSION "unknown"
#endif
#ifndef SASP_PKGDATADIR
#define SASP_PKGDATADIR "/usr/local/share/sasp"
#endif

/* The model loaded without -m: its directory name under models/ (source tree and install alike). */
#define SASP_DEFAULT_MODEL_NAME "sasp-small"
#define SASP_SOURCE_MODEL_DIR "models/" SASP_DEFAULT_MODEL_NAME
#define SASP_INSTALLED_MODEL_DIR SASP_PKGDATADIR "/models/" SASP_DEFAULT_MODEL_NAME
#define SASP_SOURCE_WWW_DIR "www"
#define SASP_INSTALLED_WWW_DIR SASP_PKGDATADIR "/www"

/* SASP_SOURCE_MODEL_DIR when the current directory has it (a model directory: config.json in it),
 * else SASP_INSTALLED_MODEL_DIR (whether or not it exists: loading it then says what is missing). */
const char *sasp_default_model_dir(void);
/* SASP_SOURCE_WWW_DIR when the current directory has www/index.html, else SASP_INSTALLED_WWW_DIR. */
const char *sasp_default_www_dir(void);

#endif
