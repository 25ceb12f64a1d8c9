/* paths.c: the default model and www/ directories of paths.h: the source tree's when the program
 * runs from one, else the installed ones. */
#include "base/paths.h"

#include <unistd.h>

const char *sasp_default_model_dir(void)
{
    return access(SASP_SOURCE_MODEL_DIR "/config.json", R_OK) == 0 ? SASP_SOURCE_MODEL_DIR : SASP_INSTALLED_MODEL_DIR;
}

const char *sasp_default_www_dir(void)
{
    return access(SASP_SOURCE_WWW_DIR "/index.html", R_OK) == 0 ? SASP_SOURCE_WWW_DIR : SASP_INSTALLED_WWW_DIR;
}
