/* cmd_import.h: the `vellum import` verb: catalogue files (CSV, JSON Lines) into the SQLite
 * database named by the configuration, one transaction per file. */
#ifndef VELLUM_CMD_IMPORT_H
#define VELLUM_CMD_IMPORT_H

/* argv holds what follows `import`: --key value flags (as for every verb) and file names, in
 * any order; `--` ends the flags. Returns the exit status: 0 done, 1 an import failed, 2 a
 * usage or configuration error. */
int cmd_import(int argc, char **argv, char **envp);

#endif
