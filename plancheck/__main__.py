from plancheck.cli import main

main()
