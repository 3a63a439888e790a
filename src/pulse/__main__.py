from pulse.cli.main import main

main()
