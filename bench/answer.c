/*
 * The footprint scenario's floor (bench/run.sh footprint): a server that answers every request
 * with 200 the moment it is started, timed by the same harness as the agents (the bench's
 * `firstanswer`), so what the harness itself adds to "start to the first 200" is printed beside them.
 *
 *   cc -O2 -o answer bench/answer.c && ./answer PORT
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2)
    {
        return 2;
    }

    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons((unsigned short)atoi(argv[1]));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 64) != 0)
    {
        return 1;
    }

    static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
    for (;;)
    {
        int connection = accept(listener, NULL, NULL);
        if (connection < 0)
        {
            continue;
        }

        char request[4096];
        if (read(connection, request, sizeof request) > 0)
        {
            (void)!write(connection, answer, sizeof answer - 1);
        }

        close(connection);
    }
}
