module envoyinjector/bench/goref

go 1.22
