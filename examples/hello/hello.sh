#!/bin/sh
# The hello example's program: greets whoever is named on the command line.
greeting=$(cat /share/hello/greeting.txt)
echo "$greeting, ${1:-world}!"
