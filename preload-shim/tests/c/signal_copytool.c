/* A copytool for the shim's signal test: installs a SIGUSR1 handler (with
 * SA_RESTART when the third argument is "restart"), registers, and waits in
 * a blocking llapi_hsm_copytool_recv, as copytools that stop on a signal
 * flag do. The handler writes "signal" to stdout (write(2) is safe there).
 *
 * Usage: signal_copytool <mount> <archive_id> restart|norestart
 * Output lines: "register <rc>", "waiting", "signal" per signal,
 * "recv <rc> <signals>", "unregister <rc>". Exit 0 unless set-up failed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct hsm_copytool_private;

int llapi_hsm_copytool_register(struct hsm_copytool_private **priv,
				const char *mnt, int archive_count,
				int *archives, int rfd_flags);
int llapi_hsm_copytool_unregister(struct hsm_copytool_private **priv);
int llapi_hsm_copytool_recv(struct hsm_copytool_private *ct,
			    void **hal, int *msgsize);

static volatile sig_atomic_t signals;

static void on_usr1(int sig)
{
	static const char msg[] = "signal\n";
	ssize_t n;

	(void)sig;
	signals++;
	n = write(STDOUT_FILENO, msg, sizeof(msg) - 1);
	(void)n;
}

int main(int argc, char **argv)
{
	struct hsm_copytool_private *ct = NULL;
	struct sigaction sa;
	void *hal = NULL;
	int msgsize = 0, rc, archive;

	if (argc != 4)
		return 2;
	archive = atoi(argv[2]);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = strcmp(argv[3], "restart") == 0 ? SA_RESTART : 0;
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		return 1;
	rc = llapi_hsm_copytool_register(&ct, argv[1], 1, &archive, 0);
	printf("register %d\n", rc);
	if (rc)
		return 1;
	printf("waiting\n");
	fflush(stdout);
	rc = llapi_hsm_copytool_recv(ct, &hal, &msgsize);
	printf("recv %d %d\n", rc, (int)signals);
	fflush(stdout);
	rc = llapi_hsm_copytool_unregister(&ct);
	printf("unregister %d\n", rc);
	return 0;
}
