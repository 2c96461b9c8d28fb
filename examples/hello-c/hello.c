/* The hello-c example: a small C program compiled inside distill's build sandbox. */
#include <stdio.h>

int main(int argc, char **argv) {
    const char *who = argc > 1 ? argv[1] : "world";
    printf("Hello from C, %s! (built with gcc %d.%d)\n", who, __GNUC__, __GNUC_MINOR__);
    return 0;
}
