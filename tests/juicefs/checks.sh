# Sourced by the shell tests: PASS/FAIL lines and their counts. A test ends
# with: echo "NAME: $pass passed, $fail failed"; [ $fail -eq 0 ]
pass=0
fail=0
ok() {
    echo "PASS: $*"
    pass=$((pass + 1))
}
ko() {
    echo "FAIL: $*"
    fail=$((fail + 1))
}
