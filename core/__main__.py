from singleid.cli import main

main()
