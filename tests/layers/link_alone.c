/* Linked with one layer's whole archive and the layers below it: see CMakeLists.txt here. */
int main(void)
{
    return 0;
}
