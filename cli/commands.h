/* commands.h: the subcommands of gkav; each takes its own argv (argv[0] is the subcommand name) and
 * returns the process exit status. */
#ifndef GKAV_COMMANDS_H
#define GKAV_COMMANDS_H

int cmd_selfcheck(int argc, char **argv);
int cmd_devices(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_classify(int argc, char **argv);

#endif
