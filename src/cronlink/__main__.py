from cronlink.cli import main

main()
